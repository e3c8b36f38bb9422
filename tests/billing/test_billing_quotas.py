"""check_quotas: ok / warning (80%) / exceeded (100%) per metric, each transition recorded once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from models.core import QuotaStatus
from tasks.billing.aggregation import aggregate_usage
from tasks.billing.ingest import ingest_events
from tasks.billing.quotas import check_quotas, quota_status
from workers.db import session_scope


def add(ws: int, sub: int, metric: str, quantity: int) -> None:
    event = {
        "event_id": f"q-{uuid.uuid4().hex}",
        "subscription_id": sub,
        "metric": metric,
        "quantity": quantity,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    with session_scope() as s:
        assert ingest_events(s, ws, [event]).accepted == 1


def transitions(sub: int) -> list[tuple[str, str, str, int, int]]:
    with session_scope() as s:
        rows = s.execute(
            text(
                'SELECT metric::text, from_status::text, to_status::text, quantity, "limit" FROM quota_events '
                "WHERE subscription_id = :id ORDER BY id"
            ),
            {"id": sub},
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def statuses(sub: int) -> dict[str, str]:
    with session_scope() as s:
        rows = s.execute(
            text(
                "SELECT um.metric::text, um.quota_status::text FROM usage_metrics um "
                "JOIN subscriptions s ON s.id = um.subscription_id AND um.period_start = s.current_period_start "
                "WHERE s.id = :id"
            ),
            {"id": sub},
        )
        return dict(rows.all())  # type: ignore[arg-type]


def run_check() -> dict[str, int]:
    with session_scope() as s:
        return check_quotas(s)


def test_status_thresholds() -> None:
    assert quota_status(79, 100) is QuotaStatus.OK
    assert quota_status(80, 100) is QuotaStatus.WARNING
    assert quota_status(99, 100) is QuotaStatus.WARNING
    assert quota_status(100, 100) is QuotaStatus.EXCEEDED
    assert quota_status(10**9, None) is QuotaStatus.OK
    assert quota_status(0, 0) is QuotaStatus.OK
    assert quota_status(1, 0) is QuotaStatus.EXCEEDED


def test_each_transition_is_recorded_once(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int]
) -> None:
    ws = new_workspace()
    sub = new_subscription(ws, "free", now=datetime.now(UTC) - timedelta(hours=2))
    add(ws, sub, "emails_sent", 79)
    add(ws, sub, "api_calls", 10_000)  # unlimited on Free: never a transition
    run_check()
    assert transitions(sub) == []

    # 85 of 100 emails, still in the tail (not aggregated): the check sees it all the same.
    add(ws, sub, "emails_sent", 6)
    run_check()
    run_check()
    assert transitions(sub) == [("emails_sent", "ok", "warning", 85, 100)]
    with session_scope() as s:
        aggregate_usage(s)
    run_check()
    assert statuses(sub)["emails_sent"] == "warning"

    add(ws, sub, "emails_sent", 15)
    add(ws, sub, "campaigns_created", 1)
    with session_scope() as s:
        aggregate_usage(s)
    run_check()
    run_check()
    # Both crossed in one check: their order within it is not defined.
    assert sorted(transitions(sub)) == [
        ("campaigns_created", "ok", "exceeded", 1, 1),
        ("emails_sent", "ok", "warning", 85, 100),
        ("emails_sent", "warning", "exceeded", 100, 100),
    ]
    assert statuses(sub) == {"emails_sent": "exceeded", "campaigns_created": "exceeded", "api_calls": "ok"}


def test_concurrent_checks_record_a_transition_once(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int]
) -> None:
    ws = new_workspace()
    sub = new_subscription(ws, "free", now=datetime.now(UTC) - timedelta(hours=2))
    add(ws, sub, "leads_created", 45)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def check() -> None:
        try:
            barrier.wait(30)
            run_check()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert transitions(sub) == [("leads_created", "ok", "warning", 45, 50)]
