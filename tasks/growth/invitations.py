"""Workspace invitations: a random token shown once, stored as its SHA-256, valid 7 days, accepted once."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.core import Role, TeamMember
from models.growth import Invitation, InvitationStatus, Milestone
from tasks.growth.activation import record_milestone
from workers.errors import BadInput

VALID_FOR = timedelta(days=7)  # the spec's security rule


def hash_token(token: str) -> str:
    # A token has 256 random bits, so a plain SHA-256 is enough: nothing to brute-force, no salt needed.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedInvitation:
    invitation_id: int
    token: str  # returned to the caller once, to put in the link; never stored or logged
    expires_at: datetime


def create_invitation(
    session: Session, workspace_id: int, email: str, role: Role, invited_by_id: int | None, now: datetime
) -> CreatedInvitation:
    if role == Role.OWNER:
        raise BadInput("an invitation cannot grant the owner role")
    normalised = email.strip().lower()
    if "@" not in normalised:
        raise BadInput("email is not an address")
    # A pending invitation already past its expiry (the hourly sweep has not reached it yet) would otherwise block
    # a fresh one for up to an hour through the one-pending-per-email index: retire it first.
    session.execute(
        update(Invitation)
        .where(
            Invitation.workspace_id == workspace_id,
            Invitation.email == normalised,
            Invitation.status == InvitationStatus.PENDING,
            Invitation.expires_at <= now,
        )
        .values(status=InvitationStatus.EXPIRED, expired_at=now)
    )
    token = secrets.token_urlsafe(32)
    row = session.execute(
        insert(Invitation)
        .values(
            workspace_id=workspace_id,
            email=normalised,
            role=role,
            token_hash=hash_token(token),
            invited_by_id=invited_by_id,
            status=InvitationStatus.PENDING,
            expires_at=now + VALID_FOR,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["workspace_id", "email"], index_where=Invitation.status == "pending")
        .returning(Invitation.id, Invitation.expires_at)
    ).first()
    if row is None:
        raise BadInput("a pending invitation for this email already exists")
    if invited_by_id is not None:
        record_milestone(session, workspace_id, invited_by_id, Milestone.TEAM_MEMBER_INVITED, now)
    return CreatedInvitation(invitation_id=row.id, token=token, expires_at=row.expires_at)


def accept_invitation(session: Session, token: str, name: str, now: datetime) -> dict[str, Any]:
    """Single use: one UPDATE flips pending -> accepted only while unexpired, so two clicks cannot both win."""
    accepted = session.execute(
        update(Invitation)
        .where(
            Invitation.token_hash == hash_token(token),
            Invitation.status == InvitationStatus.PENDING,
            Invitation.expires_at > now,
        )
        .values(status=InvitationStatus.ACCEPTED, accepted_at=now)
        .returning(Invitation.id, Invitation.workspace_id, Invitation.email, Invitation.role)
    ).first()
    if accepted is None:
        raise BadInput("invitation is invalid, expired, revoked or already used")
    # The person may already be a member (added by the main app meanwhile): (workspace_id, email) is unique, so
    # insert-or-nothing, then read whichever row is there; no check-then-insert race.
    session.execute(
        insert(TeamMember)
        .values(workspace_id=accepted.workspace_id, email=accepted.email, name=name, role=accepted.role)
        .on_conflict_do_nothing(index_elements=["workspace_id", "email"])
    )
    member_id = session.execute(
        select(TeamMember.id).where(
            TeamMember.workspace_id == accepted.workspace_id, TeamMember.email == accepted.email
        )
    ).scalar_one()
    session.execute(update(Invitation).where(Invitation.id == accepted.id).values(accepted_member_id=member_id))
    return {"invitation_id": accepted.id, "workspace_id": accepted.workspace_id, "member_id": member_id}


def revoke_invitation(session: Session, invitation_id: int, now: datetime) -> bool:
    result = session.execute(
        update(Invitation)
        .where(Invitation.id == invitation_id, Invitation.status == InvitationStatus.PENDING)
        .values(status=InvitationStatus.REVOKED, revoked_at=now)
    )
    return bool(result.rowcount)


def expire_invitations(session: Session, now: datetime) -> dict[str, Any]:
    result = session.execute(
        update(Invitation)
        .where(Invitation.status == InvitationStatus.PENDING, Invitation.expires_at <= now)
        .values(status=InvitationStatus.EXPIRED, expired_at=now)
    )
    return {"expired": int(result.rowcount or 0)}
