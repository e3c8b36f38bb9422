"""Human review of what the AI jobs wrote: a voice_actions row (approve, edit, reject) and a safety finding (confirm,
dismiss). The main app makes these state changes; these functions are the reference for how, and the database
constraints (models/ai.py) hold the same rules for any writer.

A review is one transition out of the pending state, made with a conditional UPDATE, so two reviewers racing on the
same row cannot both win and a decision is never silently overwritten: the reviewer and the time stay as the audit
record. The reviewer must be a member of the row's workspace with a role allowed to decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import null, select, update
from sqlalchemy.orm import Session

from models.ai import AISafetyLog, SafetyReviewStatus, VoiceAction, VoiceActionStatus
from models.core import Role, TeamMember
from tasks.ai.schemas import ReviewedAction
from workers.errors import BadInput

VOICE_DECISIONS = frozenset({VoiceActionStatus.APPROVED, VoiceActionStatus.EDITED, VoiceActionStatus.REJECTED})
SAFETY_DECISIONS = frozenset({SafetyReviewStatus.CONFIRMED, SafetyReviewStatus.DISMISSED})
# Viewers have read-only access (spec: roles); the safety console is an admin guardrail.
VOICE_REVIEWER_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER})
SAFETY_REVIEWER_ROLES = frozenset({Role.OWNER, Role.ADMIN})
_ACTIONS = TypeAdapter(list[ReviewedAction])


class ReviewConflict(Exception):
    """The row was already decided (by someone else, or earlier): a review is made once."""


def _check_reviewer(session: Session, workspace_id: int, reviewer_id: int, roles: frozenset[Role]) -> None:
    role = session.execute(
        select(TeamMember.role).where(TeamMember.id == reviewer_id, TeamMember.workspace_id == workspace_id)
    ).scalar_one_or_none()
    if role is None:
        raise BadInput(f"reviewer {reviewer_id} is not a member of this workspace")
    if role not in roles:
        raise BadInput(f"a {role.value} may not make this review")


def review_voice_action(
    session: Session,
    *,
    workspace_id: int,
    voice_action_id: int,
    reviewer_id: int,
    decision: VoiceActionStatus,
    edited_actions: Sequence[dict[str, Any]] | None = None,
    now: datetime | None = None,
) -> VoiceAction:
    """Approve, edit (with the reviewer's version of the actions) or reject a pending extraction."""
    if decision not in VOICE_DECISIONS:
        raise BadInput(f"decision must be one of {sorted(d.value for d in VOICE_DECISIONS)}")
    if (decision == VoiceActionStatus.EDITED) != (edited_actions is not None):
        raise BadInput("edited_actions go with the 'edited' decision, and only with it")
    edited: list[dict[str, Any]] | None = None
    if edited_actions is not None:
        try:
            edited = [a.model_dump(mode="json") for a in _ACTIONS.validate_python(list(edited_actions))]
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in err["loc"]) for err in exc.errors()})
            raise BadInput(f"edited_actions are not valid actions: {', '.join(fields)}") from None
    _check_reviewer(session, workspace_id, reviewer_id, VOICE_REVIEWER_ROLES)
    decided = session.execute(
        update(VoiceAction)
        .where(
            VoiceAction.id == voice_action_id,
            VoiceAction.workspace_id == workspace_id,
            VoiceAction.status == VoiceActionStatus.PENDING_REVIEW,
        )
        .values(
            status=decision,
            # SQL NULL, not JSON null (a JSONB column stores None as the JSON value 'null').
            edited_actions=edited if edited is not None else null(),
            reviewed_by=reviewer_id,
            reviewed_at=now or datetime.now(UTC),
        )
        .returning(VoiceAction.id)
    ).scalar_one_or_none()
    if decided is None:
        _missing_or_decided(session, VoiceAction, voice_action_id, workspace_id)
    row = session.get(VoiceAction, voice_action_id, populate_existing=True)
    assert row is not None
    return row


def review_safety_log(
    session: Session,
    *,
    workspace_id: int,
    safety_log_id: int,
    reviewer_id: int,
    decision: SafetyReviewStatus,
    note: str | None = None,
    now: datetime | None = None,
) -> AISafetyLog:
    """Confirm or dismiss one finding of the safety console."""
    if decision not in SAFETY_DECISIONS:
        raise BadInput(f"decision must be one of {sorted(d.value for d in SAFETY_DECISIONS)}")
    _check_reviewer(session, workspace_id, reviewer_id, SAFETY_REVIEWER_ROLES)
    decided = session.execute(
        update(AISafetyLog)
        .where(
            AISafetyLog.id == safety_log_id,
            AISafetyLog.workspace_id == workspace_id,
            AISafetyLog.review_status == SafetyReviewStatus.PENDING,
        )
        .values(review_status=decision, review_note=note, reviewed_by=reviewer_id, reviewed_at=now or datetime.now(UTC))
        .returning(AISafetyLog.id)
    ).scalar_one_or_none()
    if decided is None:
        _missing_or_decided(session, AISafetyLog, safety_log_id, workspace_id)
    row = session.get(AISafetyLog, safety_log_id, populate_existing=True)
    assert row is not None
    return row


def _missing_or_decided(
    session: Session, model: type[VoiceAction] | type[AISafetyLog], row_id: int, workspace_id: int
) -> None:
    found = session.execute(
        select(model.id).where(model.id == row_id, model.workspace_id == workspace_id)
    ).scalar_one_or_none()
    if found is None:
        # Another workspace's row answers the same as a missing one: ids are not an oracle across tenants.
        raise BadInput(f"{model.__tablename__} {row_id} not found in this workspace")
    raise ReviewConflict(f"{model.__tablename__} {row_id} was already reviewed")
