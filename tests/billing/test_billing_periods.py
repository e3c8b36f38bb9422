"""Anniversary periods: month-end clamping, leap years, non-UTC workspaces, half-open bounds, the invoice roll."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import text
from sqlalchemy.orm import Session

from tasks.billing.invoicing import generate_invoice, prorate
from tasks.billing.lifecycle import change_plan
from workers.db import session_scope


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def anniversaries(session: Session, start: datetime, anchor_day: int, tz: str, count: int) -> list[datetime]:
    found = [start]
    for _ in range(count):
        found.append(
            session.execute(
                text("SELECT billing_period_end(:after, :anchor, :tz)"),
                {"after": found[-1], "anchor": anchor_day, "tz": tz},
            ).scalar_one()
        )
    return found


def test_anchor_31_clamps_at_month_ends_and_returns(session: Session) -> None:
    got = anniversaries(session, utc(2026, 1, 31), 31, "UTC", 4)
    assert got == [utc(2026, 1, 31), utc(2026, 2, 28), utc(2026, 3, 31), utc(2026, 4, 30), utc(2026, 5, 31)]


def test_leap_year_february_ends_on_the_29th(session: Session) -> None:
    assert anniversaries(session, utc(2028, 1, 31), 31, "UTC", 2) == [
        utc(2028, 1, 31),
        utc(2028, 2, 29),
        utc(2028, 3, 31),
    ]
    assert anniversaries(session, utc(2028, 1, 30), 30, "UTC", 2) == [
        utc(2028, 1, 30),
        utc(2028, 2, 29),
        utc(2028, 3, 30),
    ]
    # Anchored on Feb 29 itself: the 29th where it exists, the 28th in common years, never drifting to the 28th.
    assert anniversaries(session, utc(2028, 2, 29), 29, "UTC", 12)[-1] == utc(2029, 2, 28)
    assert anniversaries(session, utc(2028, 2, 29), 29, "UTC", 13)[-1] == utc(2029, 3, 29)


@pytest.mark.parametrize(
    ("tz", "at", "expected_start", "expected_end"),
    [
        # New York, anchor 15: EST in February (UTC-5), EDT after the March switch (UTC-4).
        ("America/New_York", utc(2026, 3, 1, 12), utc(2026, 2, 15, 5), utc(2026, 3, 15, 4)),
        # Kolkata (UTC+5:30): local midnight of the 15th is 18:30 UTC on the 14th.
        ("Asia/Kolkata", utc(2026, 3, 14, 18, 29), utc(2026, 2, 14, 18, 30), utc(2026, 3, 14, 18, 30)),
        ("Asia/Kolkata", utc(2026, 3, 14, 18, 30), utc(2026, 3, 14, 18, 30), utc(2026, 4, 14, 18, 30)),
        # Sydney across its April DST end (UTC+11 -> UTC+10).
        ("Australia/Sydney", utc(2026, 4, 10), utc(2026, 3, 14, 13), utc(2026, 4, 14, 14)),
    ],
)
def test_periods_follow_local_midnight_in_the_workspace_zone(
    session: Session, tz: str, at: datetime, expected_start: datetime, expected_end: datetime
) -> None:
    row = session.execute(
        text("SELECT s, billing_period_end(s, 15, :tz) AS e FROM (SELECT billing_period_start(:at, 15, :tz) AS s) p"),
        {"at": at, "tz": tz},
    ).one()
    assert (row.s, row.e) == (expected_start, expected_end)


def test_periods_are_half_open(session: Session) -> None:
    boundary = utc(2026, 2, 28)

    def start_of(at: datetime) -> datetime:
        return session.execute(text("SELECT billing_period_start(:at, 31, 'UTC')"), {"at": at}).scalar_one()

    assert start_of(boundary) == boundary
    assert start_of(boundary - timedelta(microseconds=1)) == utc(2026, 1, 31)


def test_roll_through_a_leap_february_in_tokyo(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int], subscription_row: Callable[[int], Any]
) -> None:
    ws = new_workspace("Asia/Tokyo")
    # 15:00 on Jan 31 in Tokyo: anchored on the 31st, periods start at Tokyo midnight (15:00 UTC the day before).
    with freeze_time("2028-01-31T06:00:00Z"):
        sub_id = new_subscription(ws, "starter")
    sub = subscription_row(sub_id)
    assert sub.billing_anchor_day == 31
    assert (sub.current_period_start, sub.current_period_end) == (utc(2028, 1, 30, 15), utc(2028, 2, 28, 15))

    expected = [
        (utc(2028, 1, 30, 15), utc(2028, 2, 28, 15)),  # Jan 31 -> Feb 29 (leap)
        (utc(2028, 2, 28, 15), utc(2028, 3, 30, 15)),  # Feb 29 -> Mar 31
        (utc(2028, 3, 30, 15), utc(2028, 4, 29, 15)),  # Mar 31 -> Apr 30
    ]
    for start, end in expected:
        with freeze_time(end - timedelta(seconds=1)), session_scope() as s:
            early = generate_invoice(s, sub_id, start)
        assert early["skipped"] == "the period has not ended"
        with freeze_time(end + timedelta(minutes=5)), session_scope() as s:
            made = generate_invoice(s, sub_id, start)
        assert made["created"] is True
        assert made["total_cents"] == 4900
        rolled = subscription_row(sub_id)
        assert rolled.current_period_start == end
    with session_scope() as s:
        periods = s.execute(
            text("SELECT period_start, period_end FROM invoices WHERE subscription_id = :id ORDER BY period_start"),
            {"id": sub_id},
        ).all()
    assert [(p.period_start, p.period_end) for p in periods] == expected


def test_month_end_anchor_across_daylight_saving_in_new_york_with_a_prorated_change(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int], subscription_row: Callable[[int], Any]
) -> None:
    ws = new_workspace("America/New_York")
    # 21:00 on Jan 31 in New York (02:00 UTC on Feb 1): anchored on the local 31st, not on the UTC 1st.
    with freeze_time("2028-02-01T02:00:00Z"):
        sub_id = new_subscription(ws, "starter")
    assert subscription_row(sub_id).billing_anchor_day == 31
    expected = [
        (utc(2028, 1, 31, 5), utc(2028, 2, 29, 5)),  # EST: Jan 31 -> Feb 29 (leap)
        (utc(2028, 2, 29, 5), utc(2028, 3, 31, 4)),  # across the March 12 switch: 31 days less an hour
        (utc(2028, 3, 31, 4), utc(2028, 4, 30, 4)),  # EDT: Mar 31 -> Apr 30
    ]
    switch = utc(2028, 3, 20, 17, 45, 30)  # inside the daylight-saving period: Starter -> Professional
    with freeze_time(switch), session_scope() as s:
        assert change_plan(s, sub_id, "professional") is True
    totals = []
    for start, end in expected:
        with freeze_time(end + timedelta(minutes=5)), session_scope() as s:
            made = generate_invoice(s, sub_id, start)
        assert made["created"] is True
        totals.append(made["total_cents"])
    dst_seconds = 31 * 86_400 - 3_600
    assert int((expected[1][1] - expected[1][0]).total_seconds()) == dst_seconds
    before = int((switch - expected[1][0]).total_seconds())
    assert totals == [
        4900,
        prorate(4900, before, dst_seconds) + prorate(29900, dst_seconds - before, dst_seconds),
        29900,
    ]
    with session_scope() as s:
        periods = s.execute(
            text("SELECT period_start, period_end FROM invoices WHERE subscription_id = :id ORDER BY period_start"),
            {"id": sub_id},
        ).all()
    assert [(p.period_start, p.period_end) for p in periods] == expected
