"""Fault drill: SIGKILL workers in the middle of an invoice run over 1,000 subscriptions.

Kept apart from modules that use the in-process worker, which would otherwise take the messages itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from models.core import TERMINAL_JOB_STATUSES, JobStatus
from tests.support.jobs import enqueue, job_row
from tests.support.services import WorkerProcess, wait_until
from workers.db import session_scope
from workers.ledger import publish, sweep_stale

SUBSCRIPTIONS = 1_000
PRICES = {"free": 0, "starter": 4900, "professional": 29900, "enterprise": 99900}


def seed(workspace_id: int) -> list[int]:
    """1,000 subscriptions whose first period ended, anchored like create_subscription would (one INSERT)."""
    started = datetime.now(UTC) - timedelta(days=35)
    with session_scope() as s:
        return list(
            s.execute(
                text(
                    """
                    INSERT INTO subscriptions (workspace_id, plan_code, status, started_at, billing_anchor_day,
                                               current_period_start, current_period_end)
                    SELECT :ws, (ARRAY['free','starter','professional','enterprise'])[1 + i % 4]::plan_tier,
                           'active', :started, p.anchor, p.start, billing_period_end(p.start, p.anchor, 'UTC')
                    FROM generate_series(1, :n) AS i,
                         (SELECT extract(day from :started AT TIME ZONE 'UTC')::int AS anchor,
                                 billing_period_start(:started,
                                     extract(day from :started AT TIME ZONE 'UTC')::int, 'UTC') AS start) p
                    RETURNING id
                    """
                ),
                {"ws": workspace_id, "started": started, "n": SUBSCRIPTIONS},
            ).scalars()
        )


def invoiced(subs: list[int]) -> int:
    with session_scope() as s:
        return int(
            s.execute(
                text("SELECT count(*) FROM invoices WHERE subscription_id = ANY(:ids)"), {"ids": subs}
            ).scalar_one()
        )


def pending_invoice_jobs(subs: list[int]) -> int:
    """This drill's generate_invoice jobs not finished yet (other tests' leftovers do not count)."""
    with session_scope() as s:
        return int(
            s.execute(
                text(
                    "SELECT count(*) FROM jobs WHERE task = 'billing.generate_invoice' "
                    "AND (args->>'subscription_id')::bigint = ANY(:ids) "
                    "AND status NOT IN ('succeeded', 'failed', 'cancelled')"
                ),
                {"ids": subs},
            ).scalar_one()
        )


def sweep() -> int:
    """What the beat's outbox sweeper does every minute, with its grace compressed to seconds: a run killed
    between its commit and publishing its children leaves them queued and unpublished, and a worker killed
    whole leaves its reserved messages unacknowledged in Redis until the visibility timeout."""
    with session_scope() as s:
        due = sweep_stale(s, grace=timedelta(seconds=2), max_running=timedelta(seconds=20), limit=10_000)
    publish(due)
    return len(due)


def wait_sweeping(predicate: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {message}")
        sweep()
        time.sleep(0.5)


def test_sigkill_mid_invoice_run_leaves_exactly_one_right_invoice_each(db_url: str, new_workspace: Any) -> None:
    subs = seed(new_workspace())
    first = WorkerProcess(queues=["billing"], concurrency=2).start()
    second: WorkerProcess | None = None
    try:
        # The same run enqueued twice at once, in chunks of 100 that continue themselves.
        runs = [enqueue("billing.generate_invoices", {"chunk_size": 100}) for _ in range(2)]
        wait_until(lambda: invoiced(subs) >= 100, 90, 0.05, "the run to get going")
        first.kill_pool_process()  # one pool process dies mid-task: its message is rejected and redelivered
        wait_sweeping(lambda: invoiced(subs) >= 300, 120, "the run to go on")
        first.kill()  # then the whole worker, parent and children, as a lost host
        at_kill = invoiced(subs)
        assert at_kill < SUBSCRIPTIONS, "the run finished before the kill: the drill proved nothing"

        second = WorkerProcess(queues=["billing"], concurrency=2).start()

        def settled() -> bool:
            runs_done = all(job_row(run).status in TERMINAL_JOB_STATUSES for run in runs)
            return runs_done and invoiced(subs) == SUBSCRIPTIONS and pending_invoice_jobs(subs) == 0

        wait_sweeping(settled, 300, "every invoice")
        assert [job_row(run).status for run in runs] == [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED]
    finally:
        first.stop()
        if second is not None:
            second.stop()

    with session_scope() as s:
        rows = s.execute(
            text(
                """
                SELECT s.plan_code::text AS plan, count(i.id) AS invoices, min(i.total_cents) AS total,
                       bool_and(s.current_period_start = i.period_end) AS rolled_once,
                       (SELECT coalesce(sum(amount_cents), 0) FROM invoice_lines l
                        WHERE l.subscription_id = s.id) AS lines_total
                FROM subscriptions s LEFT JOIN invoices i ON i.subscription_id = s.id
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
    assert len(rows) == SUBSCRIPTIONS
    wrong = [r for r in rows if not (r.invoices == 1 and r.rolled_once and r.total == PRICES[r.plan] == r.lines_total)]
    assert wrong == []
    assert failed == 0
