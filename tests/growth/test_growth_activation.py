"""Activation milestones: idempotent recording, the rollup and rule, usage-proven milestones by cursor."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from models.growth import ActivationMetrics, ActivationMilestone, GrowthWatermark, Milestone, MilestoneSource
from tasks.growth import activation
from tests.growth import support
from workers.errors import BadInput

T0 = datetime(2030, 1, 10, 9, 0, tzinfo=UTC)


def _metrics(session: Session, workspace_id: int, user_id: int | None) -> ActivationMetrics:
    session.expire_all()
    return session.execute(
        select(ActivationMetrics).where(
            ActivationMetrics.workspace_id == workspace_id, ActivationMetrics.user_id.is_not_distinct_from(user_id)
        )
    ).scalar_one()


def test_record_milestone_is_idempotent_and_earliest_wins(session: Session) -> None:
    ws, _ = support.workspace(session, T0)
    user = support.member(session, ws, T0)
    first = activation.record_milestone(session, ws, user, Milestone.PROFILE_COMPLETED, T0 + timedelta(hours=2))
    again = activation.record_milestone(session, ws, user, Milestone.PROFILE_COMPLETED, T0 + timedelta(hours=2))
    later = activation.record_milestone(session, ws, user, Milestone.PROFILE_COMPLETED, T0 + timedelta(hours=5))
    earlier = activation.record_milestone(session, ws, user, Milestone.PROFILE_COMPLETED, T0 + timedelta(hours=1))
    session.commit()
    assert [first["changed"], again["changed"], later["changed"], earlier["changed"]] == [True, False, False, True]
    rows = session.execute(select(ActivationMilestone).where(ActivationMilestone.workspace_id == ws)).scalars().all()
    assert len(rows) == 1 and rows[0].occurred_at == T0 + timedelta(hours=1)


def test_rollup_score_time_to_first_value_and_activation_rule(session: Session) -> None:
    ws, _ = support.workspace(session, T0)
    user = support.member(session, ws, T0)
    steps = [
        (Milestone.ACCOUNT_CREATED, 0),
        (Milestone.PROFILE_COMPLETED, 1),
        (Milestone.ONBOARDING_COMPLETED, 2),
        (Milestone.FIRST_LEAD_ADDED, 3),
    ]
    for milestone, hours in steps:
        activation.record_milestone(session, ws, user, milestone, T0 + timedelta(hours=hours))
    session.commit()
    four = _metrics(session, ws, user)
    assert four.milestones_reached == 4 and four.activation_score == 0.4
    assert four.first_value_at is None and four.time_to_first_value_seconds is None and not four.activated

    # First value (first email) but only 5 milestones once it lands: activated at that moment.
    activation.record_milestone(session, ws, user, Milestone.FIRST_EMAIL_SENT, T0 + timedelta(hours=30))
    session.commit()
    five = _metrics(session, ws, user)
    assert five.activation_score == 0.5 and five.activated
    assert five.time_to_first_value_seconds == 30 * 3600
    assert five.activated_at == T0 + timedelta(hours=30)
    assert five.milestones["first_email_sent"].startswith("2030-01-11")

    # The workspace rollup sees the member's milestones; a second member's own view does not.
    assert _metrics(session, ws, None).milestones_reached == 5
    other = support.member(session, ws, T0 + timedelta(days=1))
    activation.record_milestone(session, ws, other, Milestone.ACCOUNT_CREATED, T0 + timedelta(days=1))
    session.commit()
    assert _metrics(session, ws, other).milestones_reached == 1
    assert not _metrics(session, ws, other).activated


def test_first_value_without_half_the_milestones_is_not_activation(session: Session) -> None:
    ws, _ = support.workspace(session, T0)
    user = support.member(session, ws, T0)
    activation.record_milestone(session, ws, user, Milestone.ACCOUNT_CREATED, T0)
    activation.record_milestone(session, ws, user, Milestone.FIRST_CAMPAIGN_LAUNCHED, T0 + timedelta(hours=4))
    session.commit()
    row = _metrics(session, ws, user)
    assert row.time_to_first_value_seconds == 4 * 3600 and not row.activated and row.activated_at is None


def test_rejects_member_of_another_workspace_and_naive_times(session: Session) -> None:
    ws, _ = support.workspace(session, T0)
    other_ws, _ = support.workspace(session, T0)
    stranger = support.member(session, other_ws, T0)
    with pytest.raises(BadInput):
        activation.record_milestone(session, ws, stranger, Milestone.CRM_CONNECTED, T0)
    with pytest.raises(BadInput):
        activation.record_milestone(session, ws, None, Milestone.CRM_CONNECTED, T0.replace(tzinfo=None))
    session.rollback()


def _watermark(session: Session) -> tuple[int, int]:
    session.expire_all()
    row = session.execute(
        select(GrowthWatermark.last_txid, GrowthWatermark.last_id).where(
            GrowthWatermark.name == activation.USAGE_WATERMARK
        )
    ).one()
    return int(row.last_txid), int(row.last_id)


def _sync_until_scanned(session: Session, expected: int, now: datetime) -> int:
    """Run the sync until it has read `expected` events. The cursor only passes transactions older than the
    cluster-wide xmin, so another long transaction on the same server (another test run) can delay it."""
    scanned = 0
    deadline = time.monotonic() + 60
    while True:
        scanned += activation.sync_usage_milestones(session, now)["events_scanned"]
        session.commit()
        if scanned >= expected or time.monotonic() > deadline:
            return scanned
        time.sleep(0.2)


def test_usage_proves_milestones_incrementally(session: Session, db_url: str) -> None:
    ws, sub = support.workspace(session, T0)
    user = support.member(session, ws, T0)
    activation.record_milestone(session, ws, user, Milestone.ACCOUNT_CREATED, T0)
    session.commit()
    support.usage(session, ws, sub, [T0 + timedelta(hours=5), T0 + timedelta(hours=3)], metric="emails_sent")
    support.usage(session, ws, sub, [T0 + timedelta(hours=1)], metric="leads_created")
    support.usage(session, ws, sub, [T0 + timedelta(hours=2)], metric="api_calls")

    assert _sync_until_scanned(session, 4, T0 + timedelta(days=1)) >= 4
    proven = {
        r.milestone: (r.occurred_at, r.source, r.user_id)
        for r in session.execute(select(ActivationMilestone).where(ActivationMilestone.workspace_id == ws)).scalars()
    }
    assert proven[Milestone.FIRST_EMAIL_SENT] == (T0 + timedelta(hours=3), MilestoneSource.USAGE, None)
    assert proven[Milestone.FIRST_LEAD_ADDED] == (T0 + timedelta(hours=1), MilestoneSource.USAGE, None)
    assert Milestone.FIRST_CAMPAIGN_CREATED not in proven
    # The member's own view includes what usage proved for the whole workspace.
    assert _metrics(session, ws, user).milestones_reached == 3
    assert _metrics(session, ws, user).time_to_first_value_seconds == 3 * 3600

    mark = _watermark(session)
    nothing_new = activation.sync_usage_milestones(session, T0 + timedelta(days=1))
    session.commit()
    assert nothing_new["events_scanned"] == 0 and _watermark(session) == mark

    # A transaction still open when the job runs holds the cursor back; once it commits, its rows are read.
    url = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as slow:
        slow.execute(
            "INSERT INTO usage_events (event_id, workspace_id, subscription_id, metric, quantity, occurred_at) "
            "VALUES (%s, %s, %s, 'campaigns_created', 1, %s)",
            (f"slow-{ws}", ws, sub, T0 + timedelta(minutes=30)),
        )
        support.usage(session, ws, sub, [T0 + timedelta(minutes=10)], metric="emails_sent")
        held = activation.sync_usage_milestones(session, T0 + timedelta(days=1))
        session.commit()
        assert held["events_scanned"] == 0
        slow.commit()
    assert _sync_until_scanned(session, 2, T0 + timedelta(days=1)) == 2
    session.expire_all()
    times = {
        r.milestone: r.occurred_at
        for r in session.execute(select(ActivationMilestone).where(ActivationMilestone.workspace_id == ws)).scalars()
    }
    assert times[Milestone.FIRST_CAMPAIGN_CREATED] == T0 + timedelta(minutes=30)
    assert times[Milestone.FIRST_EMAIL_SENT] == T0 + timedelta(minutes=10)
    assert (
        session.execute(
            select(func.count()).select_from(ActivationMilestone).where(ActivationMilestone.workspace_id == ws)
        ).scalar_one()
        == 4
    )
