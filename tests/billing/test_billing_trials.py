"""process_trials: trial -> paid plan, -> Free without a payment method, or cancelled; each change in history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from freezegun import freeze_time
from sqlalchemy import text

from tasks.billing.invoicing import generate_invoice
from tasks.billing.lifecycle import change_plan, process_trials, schedule_cancel
from workers.db import session_scope


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def history(sub: int) -> list[tuple[Any, ...]]:
    with session_scope() as s:
        rows = s.execute(
            text(
                "SELECT change::text, from_plan_code::text, to_plan_code::text, from_status::text, to_status::text, "
                "effective_at FROM subscription_history_entries WHERE subscription_id = :id ORDER BY id"
            ),
            {"id": sub},
        )
        return [tuple(r) for r in rows]


def made_lines(invoice_id: int) -> list[tuple[str, str, int]]:
    with session_scope() as s:
        rows = s.execute(
            text(
                "SELECT kind::text, plan_code::text, amount_cents FROM invoice_lines WHERE invoice_id = :id ORDER BY id"
            ),
            {"id": invoice_id},
        )
        return [(r[0], r[1], int(r[2])) for r in rows]


def run_trials() -> dict[str, int]:
    with session_scope() as s:
        return process_trials(s)


def test_trial_converts_to_its_paid_plan_in_the_workspace_zone(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int], subscription_row: Callable[[int], Any]
) -> None:
    ws = new_workspace("America/Los_Angeles")
    # 20:00 on Jan 16 in Los Angeles (04:00 UTC on the 17th); a 14-day trial ends Jan 30 20:00 local.
    with freeze_time("2030-01-17T04:00:00Z"):
        sub = new_subscription(ws, "professional", trial_days=14)
    row = subscription_row(sub)
    assert (row.state, row.trial_ends_at, row.current_period_end) == (
        "trialing",
        utc(2030, 1, 31, 4),
        utc(2030, 1, 31, 4),
    )

    with freeze_time("2030-01-31T03:59:59Z"):
        run_trials()
    assert subscription_row(sub).state == "trialing"

    with freeze_time("2030-01-31T05:00:00Z"):
        run_trials()
        run_trials()  # a second beat changes nothing
    row = subscription_row(sub)
    # Anchored on the trial's last local day (Jan 30): the first paid period ends at Feb 28 local midnight.
    assert (row.state, row.plan, row.billing_anchor_day) == ("active", "professional", 30)
    assert (row.current_period_start, row.current_period_end) == (utc(2030, 1, 31, 4), utc(2030, 2, 28, 8))
    assert history(sub) == [
        ("trial_converted", "professional", "professional", "trialing", "active", utc(2030, 1, 31, 4))
    ]


def test_trial_without_payment_method_falls_back_to_free(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int], subscription_row: Callable[[int], Any]
) -> None:
    ws = new_workspace()
    start = datetime.now(UTC) - timedelta(days=15)
    with freeze_time(start):
        sub = new_subscription(ws, "starter", trial_days=14, has_payment_method=False)
    run_trials()
    row = subscription_row(sub)
    assert (row.state, row.plan) == ("active", "free")
    assert [h[:5] for h in history(sub)] == [("trial_ended_on_free", "starter", "free", "trialing", "active")]


def test_trial_cancelled_at_period_end_ends_with_the_trial(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int], subscription_row: Callable[[int], Any]
) -> None:
    ws = new_workspace()
    with freeze_time(datetime.now(UTC) - timedelta(days=8)):
        sub = new_subscription(ws, "enterprise", trial_days=7)
    with session_scope() as s:
        s.execute(text("UPDATE subscriptions SET cancel_at_period_end = true WHERE id = :id"), {"id": sub})
    run_trials()
    row = subscription_row(sub)
    assert (row.state, row.ended_at) == ("cancelled", row.trial_ends_at)
    assert [h[0] for h in history(sub)] == ["cancelled"]


def test_a_plan_change_after_the_trial_ended_but_before_it_was_processed_keeps_history_in_order(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int], subscription_row: Callable[[int], Any]
) -> None:
    ws = new_workspace()
    with freeze_time("2031-03-01T10:00:00Z"):
        sub = new_subscription(ws, "starter", trial_days=14, has_payment_method=False)
    trial_end = utc(2031, 3, 15, 10)
    # 20 minutes after the trial ended, before the hourly process_trials: the trial is first settled at its end
    # (to Free: no payment method), then the change applies from Free.
    with freeze_time(trial_end + timedelta(minutes=20)), session_scope() as s:
        assert change_plan(s, sub, "professional") is True
    row = subscription_row(sub)
    assert (row.state, row.plan, row.current_period_start) == ("active", "professional", trial_end)
    assert [h[:3] for h in history(sub)] == [
        ("trial_ended_on_free", "starter", "free"),
        ("plan_changed", "free", "professional"),
    ]
    with freeze_time(row.current_period_end + timedelta(minutes=5)), session_scope() as s:
        made = generate_invoice(s, sub, trial_end)
    lines = made_lines(made["invoice_id"])
    assert [(kind, plan) for kind, plan, _ in lines] == [("proration", "free"), ("proration", "professional")]
    assert lines[0][2] == 0
    run_trials()
    assert [h[0] for h in history(sub)] == ["trial_ended_on_free", "plan_changed"]


def test_a_cancel_after_the_trial_ended_but_before_it_was_processed_ends_the_first_paid_period(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int], subscription_row: Callable[[int], Any]
) -> None:
    ws = new_workspace()
    with freeze_time("2031-03-01T10:00:00Z"):
        sub = new_subscription(ws, "starter", trial_days=14)
    trial_end = utc(2031, 3, 15, 10)
    with freeze_time(trial_end + timedelta(minutes=20)), session_scope() as s:
        assert schedule_cancel(s, sub) is True
    row = subscription_row(sub)
    assert (row.state, row.plan, row.cancel_at_period_end) == ("active", "starter", True)
    assert [h[0] for h in history(sub)] == ["trial_converted", "cancel_scheduled"]
