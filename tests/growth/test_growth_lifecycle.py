"""Invitations (hashed, 7 days, single use), release publishing (once), feedback upvotes under concurrency."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from models.core import Role
from models.growth import (
    FeedbackCategory,
    FeedbackSubmission,
    FeedbackUpvote,
    Invitation,
    InvitationStatus,
    ReleaseCategory,
    ReleaseNote,
)
from tasks.growth import feedback, invitations, releases
from tests.growth import support
from workers.db import session_scope
from workers.errors import BadInput

NOW = datetime(2033, 2, 1, 10, 0, tzinfo=UTC)


def test_invitation_token_hashed_single_use(session: Session) -> None:
    ws, _ = support.workspace(session, NOW - timedelta(days=30))
    owner = support.member(session, ws, NOW - timedelta(days=30))
    with freeze_time(NOW):
        created = invitations.create_invitation(session, ws, " New@Example.com ", Role.MEMBER, owner, NOW)
        session.commit()
    row = session.get(Invitation, created.invitation_id)
    assert row is not None and row.email == "new@example.com"
    assert row.token_hash == hashlib.sha256(created.token.encode()).hexdigest() != created.token
    assert row.expires_at == NOW + timedelta(days=7)
    with pytest.raises(BadInput):
        invitations.create_invitation(session, ws, "new@example.com", Role.MEMBER, owner, NOW)
    session.rollback()

    accepted = invitations.accept_invitation(session, created.token, "New Person", NOW + timedelta(days=6))
    session.commit()
    assert accepted["workspace_id"] == ws
    with pytest.raises(BadInput):
        invitations.accept_invitation(session, created.token, "Again", NOW + timedelta(days=6))
    session.rollback()
    with pytest.raises(BadInput):
        invitations.accept_invitation(session, "not-a-token", "X", NOW)
    session.rollback()


def test_invitation_expiry_boundary(session: Session) -> None:
    ws, _ = support.workspace(session, NOW - timedelta(days=30))
    created = invitations.create_invitation(session, ws, "late@example.com", Role.VIEWER, None, NOW)
    session.commit()
    deadline = NOW + timedelta(days=7)
    with freeze_time(deadline - timedelta(seconds=1)):
        invitations.expire_invitations(session, deadline - timedelta(seconds=1))
        session.commit()
    session.expire_all()
    assert session.get(Invitation, created.invitation_id).status == InvitationStatus.PENDING
    with pytest.raises(BadInput):
        invitations.accept_invitation(session, created.token, "Late", deadline)
    session.rollback()
    with freeze_time(deadline):
        invitations.expire_invitations(session, deadline)
        session.commit()
    session.expire_all()
    row = session.get(Invitation, created.invitation_id)
    assert row.status == InvitationStatus.EXPIRED and row.expired_at == deadline
    with pytest.raises(BadInput):
        invitations.create_invitation(session, ws, "owner@example.com", Role.OWNER, None, NOW)


def test_release_published_once(session: Session) -> None:
    due, later = f"1.{NOW.timestamp():.0f}.1", f"1.{NOW.timestamp():.0f}.2"
    session.execute(
        insert(ReleaseNote),
        [
            {"version": due, "title": "Due", "body": "b", "category": ReleaseCategory.FEATURE, "publish_at": NOW},
            {
                "version": later,
                "title": "Later",
                "body": "b",
                "category": ReleaseCategory.SECURITY,
                "publish_at": NOW + timedelta(minutes=5),
            },
        ],
    )
    session.commit()
    with freeze_time(NOW):
        first = releases.publish_releases(session, NOW)
        session.commit()
    assert due in first["published"] and later not in first["published"]
    with freeze_time(NOW + timedelta(minutes=1)):
        assert due not in releases.publish_releases(session, NOW + timedelta(minutes=1))["published"]
        session.commit()
    with freeze_time(NOW + timedelta(minutes=5)):
        assert later in releases.publish_releases(session, NOW + timedelta(minutes=5))["published"]
        session.commit()
    session.expire_all()
    published = {
        r.version: r.published_at
        for r in session.execute(select(ReleaseNote).where(ReleaseNote.version.in_([due, later]))).scalars()
    }
    assert published == {due: NOW, later: NOW + timedelta(minutes=5)}


def test_upvote_count_consistent_under_concurrency(session: Session) -> None:
    ws, _ = support.workspace(session, NOW)
    users = [support.member(session, ws, NOW) for _ in range(12)]
    feedback_id = session.execute(
        insert(FeedbackSubmission)
        .values(workspace_id=ws, user_id=users[0], category=FeedbackCategory.FEATURE_REQUEST, title="t", body="b")
        .returning(FeedbackSubmission.id)
    ).scalar_one()
    session.commit()
    start = threading.Barrier(24)
    errors: list[BaseException] = []

    def vote(user_id: int) -> None:
        try:
            start.wait(timeout=60)
            with session_scope() as s:
                feedback.upvote(s, feedback_id, user_id)
        except BaseException as exc:
            errors.append(exc)

    # Every user twice, all at once: duplicates must add nothing, distinct users must all count.
    threads = [threading.Thread(target=vote, args=(u,)) for u in users + users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    session.expire_all()
    rows = session.execute(
        select(func.count()).select_from(FeedbackUpvote).where(FeedbackUpvote.feedback_id == feedback_id)
    ).scalar_one()
    count = session.get(FeedbackSubmission, feedback_id).upvote_count
    assert rows == count == 12
    assert feedback.upvote(session, feedback_id, users[0])["added"] is False
    assert feedback.remove_upvote(session, feedback_id, users[0]) == {
        "feedback_id": feedback_id,
        "upvote_count": 11,
        "removed": True,
    }
    assert feedback.remove_upvote(session, feedback_id, users[0])["upvote_count"] == 11
    session.commit()


def test_reinvite_once_the_old_invitation_lapsed_before_the_sweep(session: Session) -> None:
    ws, _ = support.workspace(session, NOW - timedelta(days=30))
    old = invitations.create_invitation(session, ws, "again@example.com", Role.MEMBER, None, NOW)
    session.commit()
    lapsed = NOW + timedelta(days=7, minutes=10)  # expired, and the hourly sweep has not run yet
    fresh = invitations.create_invitation(session, ws, "Again@Example.com", Role.ADMIN, None, lapsed)
    session.commit()
    session.expire_all()
    assert session.get(Invitation, old.invitation_id).status == InvitationStatus.EXPIRED
    assert session.get(Invitation, fresh.invitation_id).status == InvitationStatus.PENDING
    with pytest.raises(BadInput):
        invitations.accept_invitation(session, old.token, "Old link", lapsed)
    session.rollback()
    assert invitations.accept_invitation(session, fresh.token, "New link", lapsed)["workspace_id"] == ws
    session.commit()
