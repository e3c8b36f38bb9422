"""NPS snapshots over rolling windows (latest answer per respondent) and survey eligibility."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from freezegun import freeze_time
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from models.growth import Milestone, NPSSnapshot, SurveyEligibility
from tasks.growth import activation, nps
from tests.growth import support

NOW = datetime(2031, 5, 20, 3, 30, tzinfo=UTC)


def _days(n: float) -> timedelta:
    return timedelta(days=n)


def _snapshot(session: Session, workspace_id: int | None, window: int, day: datetime = NOW) -> NPSSnapshot:
    session.expire_all()
    return session.execute(
        select(NPSSnapshot).where(
            NPSSnapshot.snapshot_date == day.date(),
            NPSSnapshot.window_days == window,
            NPSSnapshot.workspace_id.is_not_distinct_from(workspace_id),
        )
    ).scalar_one()


def test_rolling_windows_latest_answer_per_respondent(session: Session) -> None:
    ws, _ = support.workspace(session, NOW - _days(200))
    a, b, c, d = (support.member(session, ws, NOW - _days(200)) for _ in range(4))
    support.nps_answer(session, ws, a, 2, NOW - _days(60))  # replaced by a's later answer
    support.nps_answer(session, ws, a, 10, NOW - _days(10))
    support.nps_answer(session, ws, b, 9, NOW - _days(29))
    support.nps_answer(session, ws, c, 8, NOW - _days(45))  # only in the 90-day window
    support.nps_answer(session, ws, d, 0, NOW - _days(95))  # outside both windows
    with freeze_time(NOW):
        nps.snapshot_nps(session, NOW)
        session.commit()
    thirty = _snapshot(session, ws, 30)
    assert (thirty.promoters, thirty.passives, thirty.detractors, thirty.responses) == (2, 0, 0, 2)
    assert thirty.nps == 100.0 and thirty.margin_of_error == 0.0 and thirty.thin
    ninety = _snapshot(session, ws, 90)
    assert (ninety.promoters, ninety.passives, ninety.detractors) == (2, 1, 0)
    assert ninety.nps == 100 * 2 / 3  # stored exactly, not rounded
    assert ninety.margin_of_error is not None and ninety.margin_of_error > 0

    overall = _snapshot(session, None, 90)
    assert overall.responses >= 3
    # Re-running the same day rewrites the same rows.
    with freeze_time(NOW):
        nps.snapshot_nps(session, NOW)
        session.commit()
    assert _snapshot(session, ws, 90).id == ninety.id
    # A day later a's answer from 10 days ago is still in, b's from 29 days ago has left the 30-day window.
    later = NOW + _days(2)
    with freeze_time(later):
        nps.snapshot_nps(session, later)
        session.commit()
    assert _snapshot(session, ws, 30, later).responses == 1


def _activated_user(session: Session, ws: int, activated_at: datetime) -> int:
    user = support.member(session, ws, activated_at - _days(1))
    for i, milestone in enumerate(
        [
            Milestone.ACCOUNT_CREATED,
            Milestone.PROFILE_COMPLETED,
            Milestone.ONBOARDING_COMPLETED,
            Milestone.FIRST_LEAD_ADDED,
        ]
    ):
        activation.record_milestone(session, ws, user, milestone, activated_at - timedelta(hours=4 - i))
    activation.record_milestone(session, ws, user, Milestone.FIRST_EMAIL_SENT, activated_at)
    session.commit()
    return user


def _due(session: Session, user: int) -> list[str]:
    session.expire_all()
    return [
        row.eligible_on.isoformat()
        for row in session.execute(
            select(SurveyEligibility).where(SurveyEligibility.user_id == user).order_by(SurveyEligibility.eligible_on)
        ).scalars()
    ]


def test_survey_eligibility_rules(session: Session) -> None:
    ws, _ = support.workspace(session, NOW - _days(100))
    fresh = _activated_user(session, ws, NOW - _days(10))  # activated under 14 days ago
    ready = _activated_user(session, ws, NOW - _days(15))
    answered = _activated_user(session, ws, NOW - _days(60))
    support.nps_answer(session, ws, answered, 7, NOW - _days(12))

    def run(at: datetime) -> None:
        with freeze_time(at):
            nps.schedule_nps_surveys(session, at)
            session.commit()

    run(NOW)
    assert _due(session, fresh) == [] and _due(session, answered) == []
    assert _due(session, ready) == [NOW.date().isoformat()]
    run(NOW)  # the same day again: nothing new
    run(NOW + _days(5))
    assert _due(session, ready) == [NOW.date().isoformat()]
    assert _due(session, fresh) == [(NOW + _days(5)).date().isoformat()]
    run(NOW + _days(19))  # answered's last answer is now 31 days old
    assert _due(session, answered) == [(NOW + _days(19)).date().isoformat()]
    run(NOW + _days(31))  # 30 days after ready's last offer
    assert _due(session, ready) == [NOW.date().isoformat(), (NOW + _days(31)).date().isoformat()]
    reasons = {
        r.user_id: r.reason
        for r in session.execute(select(SurveyEligibility).where(SurveyEligibility.workspace_id == ws)).scalars()
    }
    assert reasons[answered] == "periodic" and reasons[fresh] == "first_survey"


def test_snapshot_day_and_windows_are_utc(session: Session) -> None:
    """A clock in another zone (and a session in a DST zone) still gives the UTC day and 30 x 24-hour windows."""
    ws, _ = support.workspace(session, NOW - _days(200))
    inside, outside = (support.member(session, ws, NOW - _days(200)) for _ in range(2))
    support.nps_answer(session, ws, inside, 10, NOW - _days(30) + timedelta(minutes=1))
    support.nps_answer(session, ws, outside, 0, NOW - _days(30))  # the window is (as_of - 30 days, as_of]
    session.execute(text("SET LOCAL TIME ZONE 'Asia/Karachi'"))
    karachi = NOW.astimezone(ZoneInfo("Asia/Karachi"))  # 08:30 the same day there; the UTC day is what counts
    evening = NOW.replace(hour=21).astimezone(ZoneInfo("Asia/Karachi"))  # already tomorrow in Karachi
    with freeze_time(NOW):
        # A re-run later the same day replaces the day's rows: by 21:00 both answers have left the 30-day window.
        assert nps.snapshot_nps(session, karachi)["snapshot_date"] == NOW.date().isoformat()
        session.commit()
        thirty = _snapshot(session, ws, 30)
        assert (thirty.promoters, thirty.detractors, thirty.responses) == (1, 0, 1)
        assert nps.snapshot_nps(session, evening)["snapshot_date"] == NOW.date().isoformat()
        session.commit()
    session.expire_all()
    left = session.execute(
        select(NPSSnapshot.window_days).where(NPSSnapshot.workspace_id == ws, NPSSnapshot.snapshot_date == NOW.date())
    ).scalars()
    assert sorted(left) == [90]


def test_many_workspaces_in_one_snapshot(session: Session) -> None:
    """More workspaces than fit one statement's 65,535 bind parameters (11 values a row)."""
    day = datetime(2036, 9, 1, 3, 30, tzinfo=UTC)
    count = 6_100
    session.execute(
        text(
            """
            WITH ws AS (
                INSERT INTO workspaces (name, created_at)
                SELECT 'nps-bulk-' || g || '-' || extract(epoch FROM clock_timestamp()), :at
                FROM generate_series(1, :n) g RETURNING id
            ), tm AS (
                INSERT INTO team_members (workspace_id, email, name, created_at)
                SELECT id, 'u@bulk.example', 'U', :at FROM ws RETURNING id, workspace_id
            )
            INSERT INTO nps_responses (workspace_id, user_id, score, responded_at)
            SELECT workspace_id, id, 9 + id % 2, :at FROM tm
            """
        ),
        {"n": count, "at": day - _days(3)},
    )
    session.commit()
    try:
        with freeze_time(day):
            result = nps.snapshot_nps(session, day)
            session.commit()
        assert result["overall"]["30d"] == {"nps": 100.0, "responses": count, "thin": False}
        assert result["rows"] == 2 * (count + 1)
    finally:
        session.rollback()
        session.execute(text("DELETE FROM workspaces WHERE name LIKE 'nps-bulk-%'"))
        session.commit()
