"""Invoices: exactly once per period, proration to the second, overage, late usage, grace, gapless numbers."""

from __future__ import annotations

import itertools
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from models.core import PlanTier
from tasks.billing.aggregation import aggregate_usage
from tasks.billing.ingest import ingest_events
from tasks.billing.invoicing import PlanChange, PlanPrice, finalize_invoices, generate_invoice, plan_lines, prorate
from tasks.billing.lifecycle import change_plan, schedule_cancel
from workers.db import session_scope


def invoices_of(sub: int) -> list[Any]:
    with session_scope() as s:
        return s.execute(
            text(
                "SELECT id, status::text AS status, number, subtotal_cents, total_cents, period_start, period_end "
                "FROM invoices WHERE subscription_id = :id ORDER BY period_start"
            ),
            {"id": sub},
        ).all()


def lines_of(invoice_id: int) -> list[Any]:
    with session_scope() as s:
        return s.execute(
            text(
                "SELECT kind::text AS kind, plan_code::text AS plan, metric::text AS metric, quantity, "
                "unit_amount_cents, amount_cents, usage_period_start FROM invoice_lines "
                "WHERE invoice_id = :id ORDER BY id"
            ),
            {"id": invoice_id},
        ).all()


def period(sub: int) -> tuple[datetime, datetime]:
    with session_scope() as s:
        row = s.execute(
            text("SELECT current_period_start, current_period_end FROM subscriptions WHERE id = :id"), {"id": sub}
        ).one()
        return row.current_period_start, row.current_period_end


def usage(ws: int, sub: int, quantity: int, at: datetime, metric: str = "emails_sent") -> None:
    event = {
        "event_id": f"inv-{uuid.uuid4().hex}",
        "subscription_id": sub,
        "metric": metric,
        "quantity": quantity,
        "occurred_at": at.isoformat(),
    }
    with session_scope() as s:
        assert ingest_events(s, ws, [event]).accepted == 1


def test_prorate_rounds_half_up_in_integers() -> None:
    assert prorate(4900, 1, 2) == 2450
    assert prorate(999, 1, 2) == 500
    assert prorate(1, 1, 3) == 0
    assert prorate(29900, 2_592_000, 2_592_000) == 29900


def test_exactly_one_invoice_under_concurrent_and_repeated_generation(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int]
) -> None:
    ws = new_workspace()
    sub = new_subscription(ws, "starter", now=datetime.now(UTC) - timedelta(days=40))
    start, end = period(sub)
    barrier = threading.Barrier(4)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def generate() -> None:
        try:
            barrier.wait(30)
            with session_scope() as s:
                results.append(generate_invoice(s, sub, start))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=generate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sum(1 for r in results if r["created"]) == 1
    with session_scope() as s:
        again = generate_invoice(s, sub, start)
    assert again["created"] is False
    invoices = invoices_of(sub)
    assert len(invoices) == 1
    assert (invoices[0].period_start, invoices[0].period_end, invoices[0].total_cents) == (start, end, 4900)
    assert invoices[0].status == "draft"
    assert [(line.kind, line.amount_cents) for line in lines_of(invoices[0].id)] == [("plan_fee", 4900)]
    assert period(sub)[0] == end  # rolled exactly once


def test_plan_change_inside_a_period_is_prorated_to_the_second(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int]
) -> None:
    ws = new_workspace()
    sub = new_subscription(ws, "starter", now=datetime.now(UTC) - timedelta(days=40))
    start, end = period(sub)
    switch = start + timedelta(days=9, hours=7, minutes=13, seconds=29)
    with freeze_time(switch), session_scope() as s:
        assert change_plan(s, sub, "professional") is True
    with session_scope() as s:
        made = generate_invoice(s, sub, start)
    total_seconds = int((end - start).total_seconds())
    before = int((switch - start).total_seconds())
    after = total_seconds - before
    expected_starter = (2 * 4900 * before + total_seconds) // (2 * total_seconds)
    expected_pro = (2 * 29900 * after + total_seconds) // (2 * total_seconds)
    lines = lines_of(made["invoice_id"])
    assert [(line.kind, line.plan, line.quantity, line.amount_cents) for line in lines] == [
        ("proration", "starter", before, expected_starter),
        ("proration", "professional", after, expected_pro),
    ]
    assert made["total_cents"] == expected_starter + expected_pro
    with session_scope() as s:
        history = s.execute(
            text(
                "SELECT change::text, from_plan_code::text, to_plan_code::text "
                "FROM subscription_history_entries WHERE subscription_id = :id"
            ),
            {"id": sub},
        ).all()
    assert [tuple(h) for h in history] == [("plan_changed", "starter", "professional")]


def test_cancel_at_period_end_issues_the_final_invoice_and_ends(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int], subscription_row: Callable[[int], Any]
) -> None:
    ws = new_workspace()
    sub = new_subscription(ws, "professional", now=datetime.now(UTC) - timedelta(days=40))
    start, end = period(sub)
    # Asked inside the period: it ends with this period.
    with freeze_time(end - timedelta(days=1)), session_scope() as s:
        assert schedule_cancel(s, sub) is True
        assert schedule_cancel(s, sub) is False
    with session_scope() as s:
        assert generate_invoice(s, sub, start)["total_cents"] == 29900
    row = subscription_row(sub)
    assert (row.state, row.ended_at, row.current_period_start) == ("cancelled", end, start)
    with session_scope() as s:
        assert generate_invoice(s, sub, end)["skipped"] == "not the subscription's current period"


@pytest.fixture
def starter_overage() -> Iterator[None]:
    """Starter priced at 2 cents per email over its limit for one test (plans are shared data: restored after)."""
    with session_scope() as s:
        s.execute(text("""UPDATE plans SET overage_unit_cents = '{"emails_sent": 2}' WHERE code = 'starter'"""))
    try:
        yield
    finally:
        with session_scope() as s:
            s.execute(text("UPDATE plans SET overage_unit_cents = '{}' WHERE code = 'starter'"))


def finalize_all(now: datetime) -> dict[str, Any]:
    with freeze_time(now), session_scope() as s:
        return finalize_invoices(s, limit=10_000)


def test_grace_period_late_usage_and_adjustments(
    starter_overage: None, new_workspace: Callable[..., int], new_subscription: Callable[..., int]
) -> None:
    ws = new_workspace("Europe/Paris")
    first_now = datetime.now(UTC) - timedelta(days=75)
    sub = new_subscription(ws, "starter", now=first_now)
    p0_start, p0_end = period(sub)
    usage(ws, sub, 5_100, p0_start + timedelta(days=3))
    with freeze_time(p0_end + timedelta(minutes=1)), session_scope() as s:
        p0 = generate_invoice(s, sub, p0_start)
    assert p0["total_cents"] == 4900 + 100 * 2

    # During the grace period a late event still counts; the draft is not finalised before the grace ends.
    usage(ws, sub, 50, p0_end - timedelta(hours=1))
    finalize_all(p0_end + timedelta(minutes=59))
    assert invoices_of(sub)[0].status == "draft"
    finalize_all(p0_end + timedelta(minutes=61))
    [p0_row] = invoices_of(sub)
    assert (p0_row.status, p0_row.total_cents) == ("open", 4900 + 150 * 2)
    assert re.fullmatch(r"INV-\d{4}-\d{6}", p0_row.number)

    # After finalisation: a late event for P0 is kept, aggregated into P0, and billed once on P1's invoice.
    usage(ws, sub, 30, p0_start + timedelta(days=10))
    with session_scope() as s:
        aggregate_usage(s)
    p1_start, p1_end = period(sub)
    assert p1_start == p0_end
    with freeze_time(p1_end + timedelta(minutes=1)), session_scope() as s:
        p1 = generate_invoice(s, sub, p1_start)
    assert p1["total_cents"] == 4900 + 30 * 2
    finalize_all(p1_end + timedelta(hours=2))
    p1_lines = lines_of(p1["invoice_id"])
    assert [(line.kind, line.quantity, line.amount_cents, line.usage_period_start) for line in p1_lines] == [
        ("plan_fee", 1, 4900, None),
        ("late_usage_adjustment", 30, 60, p0_start),
    ]
    assert invoices_of(sub)[0].total_cents == 4900 + 150 * 2  # the finalised P0 never changes

    # More late usage for P0, left in the tail (not aggregated): billed on P2 for the 10 new emails only.
    usage(ws, sub, 10, p0_start + timedelta(days=11))
    p2_start, p2_end = period(sub)
    with freeze_time(p2_end + timedelta(minutes=1)), session_scope() as s:
        p2 = generate_invoice(s, sub, p2_start)
    finalize_all(p2_end + timedelta(hours=2))
    assert [(line.kind, line.quantity) for line in lines_of(p2["invoice_id"])] == [
        ("plan_fee", 1),
        ("late_usage_adjustment", 10),
    ]
    assert [i.total_cents for i in invoices_of(sub)] == [5200, 4960, 4920]

    # Late usage for two finalised periods at once: P1 had no overage yet, its first 5,000 emails are within the
    # limit; both deltas land on P3, each once, oldest period first.
    usage(ws, sub, 7, p0_start + timedelta(days=12))
    usage(ws, sub, 5_004, p1_start + timedelta(days=2))
    p3_start, p3_end = period(sub)
    with freeze_time(p3_end + timedelta(minutes=1)), session_scope() as s:
        p3 = generate_invoice(s, sub, p3_start)
    finalize_all(p3_end + timedelta(hours=2))
    assert [(line.kind, line.quantity, line.usage_period_start) for line in lines_of(p3["invoice_id"])] == [
        ("plan_fee", 1, None),
        ("late_usage_adjustment", 7, p0_start),
        ("late_usage_adjustment", 4, p1_start),
    ]
    assert invoices_of(sub)[-1].total_cents == 4900 + 11 * 2


def test_numbers_are_gapless_and_finalised_invoices_frozen(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int]
) -> None:
    ws = new_workspace()
    subs = [new_subscription(ws, "starter", now=datetime.now(UTC) - timedelta(days=40)) for _ in range(6)]
    for sub in subs:
        with session_scope() as s:
            generate_invoice(s, sub, period(sub)[0])
    later = datetime.now(UTC) + timedelta(days=1)
    # A finalisation that rolls back hands its numbers back.
    with session_scope() as s:
        assert finalize_invoices(s, now=later, limit=2)["finalized"] == 2
        s.rollback()
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def finalize() -> None:
        try:
            barrier.wait(30)
            # `now` passed explicitly: freezegun's clock is process-wide and would stall other threads' connects.
            with session_scope() as s:
                finalize_invoices(s, now=later, limit=10_000)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=finalize) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    year = later.year
    with session_scope() as s:
        numbers = s.execute(
            text("SELECT number FROM invoices WHERE number LIKE :pattern"), {"pattern": f"INV-{year}-%"}
        ).scalars()
        sequence = sorted(int(n.rsplit("-", 1)[1]) for n in numbers)
        last = s.execute(
            text("SELECT last_number FROM invoice_number_counters WHERE year = :y"), {"y": year}
        ).scalar_one()
    assert sequence == list(range(1, last + 1))
    assert all(invoices_of(sub)[0].status == "open" for sub in subs)

    invoice_id = invoices_of(subs[0])[0].id
    with pytest.raises(sa_exc.DBAPIError, match="finalized"), session_scope() as s:
        s.execute(
            text(
                "UPDATE invoices SET total_cents = total_cents + 1, subtotal_cents = subtotal_cents + 1 WHERE id = :id"
            ),
            {"id": invoice_id},
        )
    with pytest.raises(sa_exc.DBAPIError, match="finalized"), session_scope() as s:
        s.execute(text("DELETE FROM invoice_lines WHERE invoice_id = :id"), {"id": invoice_id})
    with session_scope() as s:
        s.execute(text("UPDATE invoices SET status = 'paid' WHERE id = :id"), {"id": invoice_id})
    assert invoices_of(subs[0])[0].status == "paid"


def test_cancel_scheduled_after_the_period_ended_applies_to_the_next_period(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int], subscription_row: Callable[[int], Any]
) -> None:
    ws = new_workspace()
    sub = new_subscription(ws, "starter", now=datetime.now(UTC) - timedelta(days=70))
    start, end = period(sub)
    # The period ended, the hourly roll has not run yet, and the customer cancels "at the end of the period":
    # the period they are in now is the next one. Ending at `end` would end the subscription before the request
    # was made and leave the time since unbilled.
    asked = end + timedelta(minutes=20)
    with freeze_time(asked), session_scope() as s:
        assert schedule_cancel(s, sub) is True
    with freeze_time(end + timedelta(minutes=65)), session_scope() as s:
        first = generate_invoice(s, sub, start)
    assert (first["created"], first["total_cents"]) == (True, 4900)
    row = subscription_row(sub)
    assert (row.state, row.current_period_start, row.cancel_at_period_end) == ("active", end, True)
    next_end = row.current_period_end
    with freeze_time(next_end + timedelta(minutes=5)), session_scope() as s:
        last = generate_invoice(s, sub, end)
    assert (last["created"], last["total_cents"]) == (True, 4900)
    row = subscription_row(sub)
    assert (row.state, row.ended_at) == ("cancelled", next_end)
    assert row.ended_at > asked


def test_proration_segments_add_up_to_the_period_when_bounds_carry_fractions_of_a_second() -> None:
    plans = {
        PlanTier.STARTER: PlanPrice(PlanTier.STARTER, "Starter", 4900, "USD", {}, {}),
        PlanTier.PROFESSIONAL: PlanPrice(PlanTier.PROFESSIONAL, "Professional", 29900, "USD", {}, {}),
    }
    # A first paid period starts where a trial ended (now + N days: a fraction of a second) and plan changes
    # happen at any instant; upgrade then downgrade inside the period.
    start = datetime(2026, 3, 15, 10, 0, 0, 250_000, tzinfo=UTC)
    end = datetime(2026, 4, 15, 4, tzinfo=UTC)
    up = start + timedelta(days=3, seconds=0.9)
    down = start + timedelta(days=10, seconds=0.4)
    changes = [
        PlanChange(PlanTier.STARTER, PlanTier.PROFESSIONAL, up),
        PlanChange(PlanTier.PROFESSIONAL, PlanTier.STARTER, down),
    ]
    lines, plan_at_end = plan_lines(changes, PlanTier.STARTER, start, end, plans)
    assert plan_at_end is PlanTier.STARTER
    assert [line.plan_code for line in lines] == [PlanTier.STARTER, PlanTier.PROFESSIONAL, PlanTier.STARTER]
    # Whole seconds on the clock: each boundary counts at its second, so the segments tile the period exactly.
    whole = [int(at.timestamp() // 1) for at in (start, up, down, end)]
    period_seconds = whole[-1] - whole[0]
    assert [line.quantity for line in lines] == [b - a for a, b in itertools.pairwise(whole)]
    assert sum(line.quantity for line in lines) == period_seconds
    assert [line.amount_cents for line in lines] == [
        prorate(price, line.quantity, period_seconds) for price, line in zip((4900, 29900, 4900), lines, strict=True)
    ]


def test_a_unit_price_that_is_not_whole_cents_is_refused_not_rounded_away(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int]
) -> None:
    ws = new_workspace()
    sub = new_subscription(ws, "starter", now=datetime.now(UTC) - timedelta(days=40))
    start, _ = period(sub)
    usage(ws, sub, 5_400, start + timedelta(days=1))
    try:
        with session_scope() as s:
            s.execute(text("""UPDATE plans SET overage_unit_cents = '{"emails_sent": 0.5}' WHERE code = 'starter'"""))
        # Half a cent per email cannot be billed in integer cents: int(0.5) would bill the 400 extra emails at 0.
        with pytest.raises(ValueError, match="whole cents"), session_scope() as s:
            generate_invoice(s, sub, start)
    finally:
        with session_scope() as s:
            s.execute(text("UPDATE plans SET overage_unit_cents = '{}' WHERE code = 'starter'"))
    assert invoices_of(sub) == []


def test_usage_racing_the_roll_and_aggregation_is_billed_exactly_once(
    starter_overage: None, new_workspace: Callable[..., int], new_subscription: Callable[..., int]
) -> None:
    ws = new_workspace("America/Chicago")
    sub = new_subscription(ws, "starter", now=datetime.now(UTC) - timedelta(days=40))
    p0_start, p0_end = period(sub)
    usage(ws, sub, 4_990, p0_start + timedelta(days=1))
    now = datetime.now(UTC)
    stop = threading.Event()
    errors: list[BaseException] = []

    def aggregate_repeatedly() -> None:
        try:
            while not stop.is_set():
                with session_scope() as s:
                    aggregate_usage(s, chunk_events=1_000, max_chunks=1)
        except BaseException as exc:
            errors.append(exc)

    aggregator = threading.Thread(target=aggregate_repeatedly)
    aggregator.start()
    try:
        # Each batch: one late email for the ended period P0 and one for P1, while the aggregation runs and, a
        # third of the way through, P0's invoice is drafted and the subscription rolls to P1.
        for batch in range(30):
            usage(ws, sub, 1, p0_end - timedelta(minutes=batch + 1))
            usage(ws, sub, 1, now - timedelta(minutes=batch + 1))
            if batch == 10:
                with session_scope() as s:
                    assert generate_invoice(s, sub, p0_start, now=now)["created"] is True
    finally:
        stop.set()
        aggregator.join(60)
    assert not errors
    with session_scope() as s:
        finalize_invoices(s, now=p0_end + timedelta(hours=2), limit=10_000)
    [p0] = invoices_of(sub)
    # The grace period covered every late email: 4,990 + 30 - 5,000 = 20 over, billed on P0 itself.
    assert (p0.status, p0.total_cents) == ("open", 4900 + 20 * 2)

    usage(ws, sub, 3, p0_start + timedelta(days=2))  # after finalisation: an adjustment on P1
    with session_scope() as s:
        while aggregate_usage(s).events:
            pass
    with session_scope() as s:
        quantities = dict(
            s.execute(
                text(
                    "SELECT period_start, quantity FROM usage_metrics "
                    "WHERE subscription_id = :id AND metric = 'emails_sent'"
                ),
                {"id": sub},
            ).all()
        )
    assert quantities == {p0_start: 4_990 + 30 + 3, p0_end: 30}
    p1_start, p1_end = period(sub)
    assert p1_start == p0_end
    with session_scope() as s:
        p1 = generate_invoice(s, sub, p1_start, now=p1_end + timedelta(minutes=1))
    with session_scope() as s:
        finalize_invoices(s, now=p1_end + timedelta(hours=2), limit=10_000)
    assert [(line.kind, line.quantity, line.usage_period_start) for line in lines_of(p1["invoice_id"])] == [
        ("plan_fee", 1, None),
        ("late_usage_adjustment", 3, p0_start),
    ]
