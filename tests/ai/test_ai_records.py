"""What the AI jobs leave behind: review as a state change with reviewer and time, the constraints that hold it for
any writer, and errors that describe a failure without the text it was handling."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from freezegun import freeze_time
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from models.ai import AISafetyLog, SafetyReviewStatus, VoiceAction, VoiceActionStatus
from models.core import TeamMember
from tasks.ai.jobs import ContentFreeError, content_free_errors
from tasks.ai.review import ReviewConflict, review_safety_log, review_voice_action
from tasks.ai.schemas import ActionDraft
from workers.db import new_session
from workers.errors import BadInput

EXTRACTED = [
    {
        "type": "follow_up",
        "title": "Send the ROI summary",
        "description": "Priya sends it",
        "owner": "Priya Shah",
        "owner_email": None,
        "due_at": "2026-03-13T17:00:00-05:00",
        "due_phrase": "by Friday",
        "confidence": 0.9,
        "evidence": "Priya: I'll send you the ROI summary by Friday.",
        "turn_index": 6,
        "warnings": [],
    },
]


def _member(session: Any, workspace_id: int, role: str = "member") -> int:
    member_id = session.execute(
        insert(TeamMember)
        .values(workspace_id=workspace_id, email=f"{uuid.uuid4().hex[:10]}@a.test", name="Reviewer", role=role)
        .returning(TeamMember.id)
    ).scalar_one()
    session.commit()
    return int(member_id)


def _voice_action(session: Any, workspace_id: int) -> int:
    row_id = session.execute(
        insert(VoiceAction)
        .values(
            workspace_id=workspace_id,
            input_kind="text",
            transcript=[],
            transcript_hash="0" * 64,
            input_hash=uuid.uuid4().hex,
            call_started_at=datetime(2026, 3, 11, 20, tzinfo=UTC),
            actions=EXTRACTED,
            engine="offline",
        )
        .returning(VoiceAction.id)
    ).scalar_one()
    session.commit()
    return int(row_id)


def _safety_log(session: Any, workspace_id: int) -> int:
    row_id = session.execute(
        insert(AISafetyLog)
        .values(
            workspace_id=workspace_id,
            scan_id=uuid.uuid4(),
            ordinal=0,
            channel="email",
            category="pii",
            finding_type="credit_card",
            severity="critical",
            action="modify",
            content_hash="0" * 64,
        )
        .returning(AISafetyLog.id)
    ).scalar_one()
    session.commit()
    return int(row_id)


def test_approving_records_who_and_when_and_a_second_review_is_refused(make_workspace: Any, session: Any) -> None:
    workspace_id = make_workspace()
    reviewer, other_reviewer = _member(session, workspace_id), _member(session, workspace_id)
    row_id = _voice_action(session, workspace_id)
    with freeze_time("2026-03-12T09:30:00Z"):
        row = review_voice_action(
            session,
            workspace_id=workspace_id,
            voice_action_id=row_id,
            reviewer_id=reviewer,
            decision=VoiceActionStatus.APPROVED,
        )
    session.commit()
    assert (row.status, row.reviewed_by, row.reviewed_at) == (
        VoiceActionStatus.APPROVED,
        reviewer,
        datetime(2026, 3, 12, 9, 30, tzinfo=UTC),
    )
    assert row.actions == EXTRACTED and row.edited_actions is None

    with pytest.raises(ReviewConflict, match="already reviewed"):
        review_voice_action(
            session,
            workspace_id=workspace_id,
            voice_action_id=row_id,
            reviewer_id=other_reviewer,
            decision=VoiceActionStatus.REJECTED,
        )
    session.rollback()
    stored = session.execute(select(VoiceAction).where(VoiceAction.id == row_id)).scalar_one()
    assert (stored.status, stored.reviewed_by) == (VoiceActionStatus.APPROVED, reviewer)


def test_an_edit_keeps_the_extraction_beside_the_reviewers_version(make_workspace: Any, session: Any) -> None:
    workspace_id = make_workspace()
    reviewer = _member(session, workspace_id)
    row_id = _voice_action(session, workspace_id)
    common = {"workspace_id": workspace_id, "voice_action_id": row_id, "reviewer_id": reviewer}
    with pytest.raises(BadInput, match="edited_actions go with"):
        review_voice_action(session, **common, decision=VoiceActionStatus.EDITED)
    with pytest.raises(BadInput, match="edited_actions go with"):
        review_voice_action(session, **common, decision=VoiceActionStatus.APPROVED, edited_actions=[])
    with pytest.raises(BadInput, match=r"0\.type"):
        review_voice_action(
            session, **common, decision=VoiceActionStatus.EDITED, edited_actions=[{"type": "meeting", "title": "x"}]
        )
    edited = [
        {
            "type": "task",
            "title": "Send the ROI summary to the CFO",
            "owner": "Priya Shah",
            "due_at": "2026-03-16T17:00:00-05:00",
            "turn_index": 6,
        }
    ]
    row = review_voice_action(session, **common, decision=VoiceActionStatus.EDITED, edited_actions=edited)
    session.commit()
    assert row.status == VoiceActionStatus.EDITED and row.actions == EXTRACTED
    assert row.edited_actions == [
        {
            "type": "task",
            "title": "Send the ROI summary to the CFO",
            "description": "",
            "owner": "Priya Shah",
            "owner_email": None,
            "due_at": "2026-03-16T17:00:00-05:00",
            "turn_index": 6,
        }
    ]


def test_only_members_of_the_workspace_with_a_deciding_role_may_review(make_workspace: Any, session: Any) -> None:
    workspace_id, other_workspace = make_workspace(), make_workspace()
    outsider = _member(session, other_workspace, role="owner")
    viewer, member, admin = (_member(session, workspace_id, role) for role in ("viewer", "member", "admin"))
    voice_id, log_id = _voice_action(session, workspace_id), _safety_log(session, workspace_id)

    with pytest.raises(BadInput, match="not a member of this workspace"):
        review_voice_action(
            session,
            workspace_id=workspace_id,
            voice_action_id=voice_id,
            reviewer_id=outsider,
            decision=VoiceActionStatus.APPROVED,
        )
    with pytest.raises(BadInput, match="a viewer may not"):
        review_voice_action(
            session,
            workspace_id=workspace_id,
            voice_action_id=voice_id,
            reviewer_id=viewer,
            decision=VoiceActionStatus.APPROVED,
        )
    with pytest.raises(BadInput, match="a member may not"):
        review_safety_log(
            session,
            workspace_id=workspace_id,
            safety_log_id=log_id,
            reviewer_id=member,
            decision=SafetyReviewStatus.DISMISSED,
        )
    # Another workspace's row is "not found", the same as a missing one, even for that workspace's owner.
    with pytest.raises(BadInput, match="not found in this workspace"):
        review_voice_action(
            session,
            workspace_id=other_workspace,
            voice_action_id=voice_id,
            reviewer_id=outsider,
            decision=VoiceActionStatus.APPROVED,
        )
    session.rollback()
    assert session.get(VoiceAction, voice_id).status == VoiceActionStatus.PENDING_REVIEW

    with freeze_time("2026-11-20T08:00:00Z"):
        finding = review_safety_log(
            session,
            workspace_id=workspace_id,
            safety_log_id=log_id,
            reviewer_id=admin,
            decision=SafetyReviewStatus.CONFIRMED,
            note="real card number",
        )
    session.commit()
    assert (finding.review_status, finding.reviewed_by, finding.reviewed_at, finding.review_note) == (
        SafetyReviewStatus.CONFIRMED,
        admin,
        datetime(2026, 11, 20, 8, tzinfo=UTC),
        "real card number",
    )


def test_two_reviewers_racing_cannot_both_win(make_workspace: Any, session: Any) -> None:
    workspace_id = make_workspace()
    first, second = _member(session, workspace_id), _member(session, workspace_id)
    row_id = _voice_action(session, workspace_id)
    review_voice_action(
        session,
        workspace_id=workspace_id,
        voice_action_id=row_id,
        reviewer_id=first,
        decision=VoiceActionStatus.APPROVED,
    )  # holds the row lock until commit
    outcome: list[BaseException | None] = []

    def second_reviewer() -> None:
        other = new_session()
        try:
            review_voice_action(
                other,
                workspace_id=workspace_id,
                voice_action_id=row_id,
                reviewer_id=second,
                decision=VoiceActionStatus.REJECTED,
            )
            other.commit()
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread to assert on
            outcome.append(exc)
        finally:
            other.rollback()
            other.close()

    racer = threading.Thread(target=second_reviewer)
    racer.start()
    racer.join(timeout=1)  # it waits on the first reviewer's row lock
    session.commit()
    racer.join(timeout=60)
    assert not racer.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ReviewConflict)
    session.expire_all()
    stored = session.get(VoiceAction, row_id)
    assert (stored.status, stored.reviewed_by) == (VoiceActionStatus.APPROVED, first)


def test_the_database_holds_the_review_rules_for_any_writer(make_workspace: Any, session: Any) -> None:
    workspace_id = make_workspace()
    reviewer = _member(session, workspace_id)
    row_id, log_id = _voice_action(session, workspace_id), _safety_log(session, workspace_id)
    bad_changes = [
        update(VoiceAction).where(VoiceAction.id == row_id).values(status="approved"),  # decided without a time
        update(VoiceAction).where(VoiceAction.id == row_id).values(reviewed_by=reviewer),  # reviewer, still pending
        update(VoiceAction)
        .where(VoiceAction.id == row_id)  # edited without the reviewer's version
        .values(status="edited", reviewed_by=reviewer, reviewed_at=datetime.now(UTC)),
        update(AISafetyLog).where(AISafetyLog.id == log_id).values(review_status="dismissed"),
        update(AISafetyLog).where(AISafetyLog.id == log_id).values(reviewed_at=datetime.now(UTC)),  # time, pending
    ]
    for change in bad_changes:
        with pytest.raises(IntegrityError):
            session.execute(change)
        session.rollback()


def test_removing_a_reviewer_keeps_the_decision_and_its_time(make_workspace: Any, session: Any) -> None:
    """team_members -> reviewed_by is ON DELETE SET NULL: the constraints must let that happen."""
    workspace_id = make_workspace()
    reviewer = _member(session, workspace_id, role="admin")
    row_id, log_id = _voice_action(session, workspace_id), _safety_log(session, workspace_id)
    review_voice_action(
        session,
        workspace_id=workspace_id,
        voice_action_id=row_id,
        reviewer_id=reviewer,
        decision=VoiceActionStatus.REJECTED,
    )
    review_safety_log(
        session,
        workspace_id=workspace_id,
        safety_log_id=log_id,
        reviewer_id=reviewer,
        decision=SafetyReviewStatus.DISMISSED,
    )
    session.commit()
    session.execute(delete(TeamMember).where(TeamMember.id == reviewer))
    session.commit()
    session.expire_all()
    voice, finding = session.get(VoiceAction, row_id), session.get(AISafetyLog, log_id)
    assert (voice.status, voice.reviewed_by) == (VoiceActionStatus.REJECTED, None) and voice.reviewed_at is not None
    assert (finding.review_status, finding.reviewed_by) == (SafetyReviewStatus.DISMISSED, None)
    assert finding.reviewed_at is not None


def test_unexpected_errors_name_the_failure_without_the_text(session: Any) -> None:
    marker = uuid.uuid4().hex
    with pytest.raises(ContentFreeError) as caught, content_free_errors():
        ActionDraft.model_validate(
            {
                "type": "task",
                "title": "t",
                "description": marker * 100,
                "owner_speaker": None,
                "due_phrase": None,
                "turn_index": 0,
                "confidence": 0.5,
            }
        )
    assert marker not in str(caught.value) and "description: string_too_long" in str(caught.value)

    # PostgreSQL quotes the bad value in its message and SQLAlchemy adds the parameters: neither may leave.
    with pytest.raises(ContentFreeError) as caught, content_free_errors():
        session.execute(text("SELECT CAST(:value AS integer)"), {"value": marker})
    assert marker not in str(caught.value) and "SQLSTATE 22P02" in str(caught.value)
    session.rollback()

    # A transient error keeps its type (the job base retries on it), with the parameters hidden.
    lost = OperationalError("SELECT :value", {"value": marker}, psycopg.OperationalError("server closed connection"))
    with pytest.raises(OperationalError) as transient, content_free_errors():
        raise lost
    assert transient.value is lost and marker not in str(transient.value)
