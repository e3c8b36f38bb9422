"""The billing jobs on a real worker: ingest, aggregation chained to quotas, the invoice fan-out run twice at once."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from models.core import JobStatus
from tasks.billing.invoicing import generate_invoice
from tests.support.jobs import enqueue, wait_for_job
from tests.support.services import wait_until
from workers.db import session_scope


def test_ingest_then_aggregate_chains_check_quotas(
    run_job: Callable[..., Any], new_workspace: Callable[..., int], new_subscription: Callable[..., int]
) -> None:
    ws = new_workspace()
    sub = new_subscription(ws, "free", now=datetime.now(UTC) - timedelta(hours=3))
    events = [
        {
            "event_id": f"job-{uuid.uuid4().hex}",
            "subscription_id": sub,
            "metric": "leads_created",
            "quantity": 25,
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        for _ in range(2)
    ]
    ingested = wait_for_job(
        enqueue("billing.ingest_usage", {"workspace_id": ws, "events": [*events, {"bad": True}]}, workspace_id=ws)
    )
    assert ingested.status == JobStatus.SUCCEEDED
    assert (ingested.result["accepted"], [r["index"] for r in ingested.result["rejected"]]) == (2, [2])

    aggregated = run_job("billing.aggregate_usage")
    assert aggregated.status == JobStatus.SUCCEEDED
    assert aggregated.result["events"] >= 2

    def quota_child() -> Any:
        with session_scope() as s:
            return s.execute(
                text("SELECT id FROM jobs WHERE parent_id = :id AND task = 'billing.check_quotas'"),
                {"id": aggregated.id},
            ).scalar_one_or_none()

    child = wait_for_job(wait_until(quota_child, 60, 0.1, "check_quotas child"))
    assert child.status == JobStatus.SUCCEEDED
    with session_scope() as s:
        recorded = s.execute(
            text("SELECT to_status::text FROM quota_events WHERE subscription_id = :id AND metric = 'leads_created'"),
            {"id": sub},
        ).scalars()
        assert list(recorded) == ["exceeded"]


def test_invoice_run_enqueued_twice_at_once_invoices_each_subscription_once(
    celery_worker: Any, new_workspace: Callable[..., int], new_subscription: Callable[..., int]
) -> None:
    ws = new_workspace()
    subs = [
        new_subscription(ws, plan, now=datetime.now(UTC) - timedelta(days=35))
        for plan in ("starter", "professional", "free", "enterprise") * 6
    ]
    # The same run twice at once (as two beats would): chunks of 7, so the fan-out continues itself.
    runs = [enqueue("billing.generate_invoices", {"chunk_size": 7}) for _ in range(2)]
    for run in runs:
        assert wait_for_job(run).status == JobStatus.SUCCEEDED

    def settled() -> bool:
        with session_scope() as s:
            invoiced = s.execute(
                text("SELECT count(DISTINCT subscription_id) FROM invoices WHERE subscription_id = ANY(:ids)"),
                {"ids": subs},
            ).scalar_one()
            pending = s.execute(
                text(
                    "SELECT count(*) FROM jobs WHERE task = 'billing.generate_invoice' "
                    "AND (args->>'subscription_id')::bigint = ANY(:ids) "
                    "AND status NOT IN ('succeeded', 'failed', 'cancelled')"
                ),
                {"ids": subs},
            ).scalar_one()
        return invoiced == len(subs) and pending == 0

    wait_until(settled, 60, 0.2, "every subscription invoiced")
    with session_scope() as s:
        rows = s.execute(
            text(
                """
                SELECT s.id, s.plan_code::text AS plan, count(i.id) AS invoices, min(i.total_cents) AS total,
                       bool_and(s.current_period_start = i.period_end) AS rolled_once
                FROM subscriptions s JOIN invoices i ON i.subscription_id = s.id
                WHERE s.id = ANY(:ids) GROUP BY s.id
                """
            ),
            {"ids": subs},
        ).all()
        failed = s.execute(
            text(
                "SELECT count(*) FROM jobs WHERE task = 'billing.generate_invoice' AND status = 'failed' "
                "AND (args->>'subscription_id')::bigint = ANY(:ids)"
            ),
            {"ids": subs},
        ).scalar_one()
    prices = {"free": 0, "starter": 4900, "professional": 29900, "enterprise": 99900}
    assert len(rows) == len(subs)
    assert all(r.invoices == 1 and r.rolled_once and r.total == prices[r.plan] for r in rows)
    assert failed == 0


def test_finalize_and_trials_jobs_run(
    run_job: Callable[..., Any],
    new_workspace: Callable[..., int],
    new_subscription: Callable[..., int],
    subscription_row: Callable[[int], Any],
) -> None:
    ws = new_workspace()
    invoiced = new_subscription(ws, "starter", now=datetime.now(UTC) - timedelta(days=40))
    with session_scope() as s:
        draft = generate_invoice(s, invoiced, subscription_row(invoiced).current_period_start)["invoice_id"]
    trialing = new_subscription(ws, "professional", now=datetime.now(UTC) - timedelta(days=20), trial_days=14)

    finalized = run_job("billing.finalize_invoices", limit=10_000)
    assert finalized.status == JobStatus.SUCCEEDED
    assert finalized.result["finalized"] >= 1
    with session_scope() as s:
        status, number = s.execute(
            text("SELECT status::text, number FROM invoices WHERE id = :id"), {"id": draft}
        ).one()
    assert status == "open" and number is not None
    trials = run_job("billing.process_trials")
    assert trials.status == JobStatus.SUCCEEDED
    assert trials.result["processed"] >= 1
    assert (subscription_row(trialing).state, subscription_row(trialing).plan) == ("active", "professional")
