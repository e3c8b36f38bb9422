"""Aggregation from the (txid, id) watermark: exact, safe under concurrent runs, redelivery and late commits."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import text

from tasks.billing.aggregation import aggregate_usage, period_usage
from tasks.billing.ingest import ingest_events
from tasks.billing.lifecycle import process_trials
from workers.db import new_session, session_scope


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def raw_event(sub_id: int, quantity: int, at: datetime, metric: str = "api_calls") -> dict[str, object]:
    return {
        "event_id": f"agg-{uuid.uuid4().hex}",
        "subscription_id": sub_id,
        "metric": metric,
        "quantity": quantity,
        "occurred_at": at.isoformat(),
    }


def aggregated(sub_id: int) -> dict[tuple[str, datetime], int]:
    with session_scope() as s:
        rows = s.execute(
            text(
                "SELECT metric::text AS metric, period_start, quantity FROM usage_metrics "
                "WHERE subscription_id = :id AND quantity > 0"
            ),
            {"id": sub_id},
        )
        return {(r.metric, r.period_start): int(r.quantity) for r in rows}


def current_period(sub_id: int) -> tuple[datetime, datetime]:
    with session_scope() as s:
        row = s.execute(
            text("SELECT current_period_start, current_period_end FROM subscriptions WHERE id = :id"), {"id": sub_id}
        ).one()
        return row.current_period_start, row.current_period_end


def drain() -> None:
    while True:
        with session_scope() as s:
            if aggregate_usage(s, chunk_events=1_000).events == 0:
                return


def test_concurrent_runs_count_every_event_exactly_once(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int]
) -> None:
    ws = new_workspace()
    now = datetime.now(UTC)
    subs = [new_subscription(ws, "professional", now=now - timedelta(days=2)) for _ in range(3)]
    rng = random.Random(7)
    expected = dict.fromkeys(subs, 0)
    stop = threading.Event()
    errors: list[BaseException] = []

    def aggregate_repeatedly() -> None:
        try:
            while not stop.is_set():
                with session_scope() as s:
                    aggregate_usage(s, chunk_events=1_000, max_chunks=2)
        except BaseException as exc:
            errors.append(exc)

    runners = [threading.Thread(target=aggregate_repeatedly) for _ in range(2)]
    for runner in runners:
        runner.start()
    try:
        for _ in range(20):
            batch = []
            for _ in range(150):
                sub = rng.choice(subs)
                quantity = rng.randint(1, 9)
                expected[sub] += quantity
                batch.append(raw_event(sub, quantity, now - timedelta(seconds=rng.randint(0, 3600))))
            with session_scope() as s:
                assert ingest_events(s, ws, batch).accepted == len(batch)
    finally:
        stop.set()
        for runner in runners:
            runner.join(60)
    assert not errors
    drain()
    for sub in subs:
        start, _ = current_period(sub)
        assert aggregated(sub) == {("api_calls", start): expected[sub]}


def test_an_event_committed_late_with_a_lower_id_is_not_skipped(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int]
) -> None:
    ws = new_workspace()
    now = datetime.now(UTC)
    sub = new_subscription(ws, "starter", now=now - timedelta(days=1))
    start, end = current_period(sub)
    slow = new_session()
    try:
        # This transaction takes its id first and commits last.
        ingest_events(slow, ws, [raw_event(sub, 5, now)])
        with session_scope() as s:
            ingest_events(s, ws, [raw_event(sub, 7, now)])
        drain()
        # The committed event is past the horizon the open transaction holds back: not aggregated yet (an id
        # watermark would have taken it and moved past the open transaction's lower id), and usage is still exact.
        assert aggregated(sub) == {}
        with session_scope() as s:
            assert period_usage(s, sub, start, end)["api_calls"] == 7
        slow.commit()
    finally:
        slow.close()
    drain()
    assert aggregated(sub) == {("api_calls", start): 12}
    with session_scope() as s:
        assert period_usage(s, sub, start, end)["api_calls"] == 12


def test_a_rolled_back_run_is_redone_once(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int]
) -> None:
    ws = new_workspace()
    now = datetime.now(UTC)
    sub = new_subscription(ws, "starter", now=now - timedelta(days=1))
    start, end = current_period(sub)
    with session_scope() as s:
        ingest_events(s, ws, [raw_event(sub, 4, now), raw_event(sub, 6, now)])
    lost = new_session()
    try:
        assert aggregate_usage(lost).events >= 2
        lost.rollback()  # the worker died before commit: a redelivery runs it again
    finally:
        lost.close()
    drain()
    assert aggregated(sub) == {("api_calls", start): 10}
    with session_scope() as s:
        assert period_usage(s, sub, start, end)["api_calls"] == 10


def test_events_after_an_unrolled_period_end_land_in_the_next_period(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int]
) -> None:
    ws = new_workspace("America/New_York")
    now = datetime.now(UTC)
    sub = new_subscription(ws, "starter", now=now - timedelta(days=40))
    start, end = current_period(sub)
    assert end < now  # the invoice roll has not run yet
    with session_scope() as s:
        ingest_events(
            s,
            ws,
            [
                raw_event(sub, 1, end - timedelta(microseconds=1)),
                raw_event(sub, 2, end),
                raw_event(sub, 3, now),
            ],
        )
    drain()
    with session_scope() as s:
        next_end = s.execute(
            text(
                "SELECT billing_period_end(:e, billing_anchor_day, 'America/New_York') "
                "FROM subscriptions WHERE id = :id"
            ),
            {"e": end, "id": sub},
        ).scalar_one()
    got = aggregated(sub)
    assert got[("api_calls", start)] == 1
    if now < next_end:
        assert got[("api_calls", end)] == 5
    else:
        assert got[("api_calls", end)] == 2


def test_late_trial_usage_lands_in_the_trial_period(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int]
) -> None:
    ws = new_workspace("Europe/Paris")
    with freeze_time("2031-03-01T10:00:00Z"):
        sub = new_subscription(ws, "starter", trial_days=14)
    trial_start, trial_end = current_period(sub)
    with freeze_time("2031-03-05T08:00:00Z"), session_scope() as s:
        ingest_events(s, ws, [raw_event(sub, 3, utc(2031, 3, 5, 7))])
    drain()
    with freeze_time("2031-03-15T11:00:00Z"), session_scope() as s:
        assert process_trials(s)["trial_converted"] == 1
    # Usage from the trial's last days reported after the conversion: same trial period, not a made-up one.
    with freeze_time("2031-03-15T11:30:00Z"), session_scope() as s:
        ingest_events(s, ws, [raw_event(sub, 4, utc(2031, 3, 10)), raw_event(sub, 5, trial_end - timedelta(hours=2))])
    drain()
    assert aggregated(sub) == {("api_calls", trial_start): 12}


def test_aggregation_refuses_a_transaction_snapshot(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int]
) -> None:
    # The horizon is only safe if each statement sees what committed before it: under REPEATABLE READ a transaction
    # that committed between the run's first statement and its horizon would fall below the watermark unseen.
    ws = new_workspace()
    sub = new_subscription(ws, "starter", now=datetime.now(UTC) - timedelta(days=1))
    with session_scope() as s:
        ingest_events(s, ws, [raw_event(sub, 2, datetime.now(UTC))])
    snapshot_session = new_session()
    try:
        snapshot_session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        with pytest.raises(RuntimeError, match="READ COMMITTED"):
            aggregate_usage(snapshot_session)
    finally:
        snapshot_session.rollback()
        snapshot_session.close()
    drain()
    assert sum(aggregated(sub).values()) == 2
