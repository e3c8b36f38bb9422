"""Fault drills against real processes: each injects a production fault mid-run and asserts the exact final state.

Every drill starts its own worker processes (never the in-process worker), reports one summary line
(faults injected, jobs expected, completed, duplicates, lost) and then asserts. Runs are counted from the
workers' own logs (`event=succeeded` per job), independently of the ledger.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.engine import make_url

from models.billing import Invoice
from models.core import Job, JobStatus, Subscription, UsageEvent
from tests.faults.drills import (
    FastBeat,
    FaultOutcome,
    completions,
    ledger,
    outcome,
    publish_to,
    record_jobs,
    wait_all_succeeded,
)
from tests.support.services import RedisServer, WorkerProcess, wait_until
from tests.support.tcp_proxy import TcpProxy
from workers.db import session_scope
from workers.ledger import publish

Report = Callable[[FaultOutcome], None]


def _running_count(job_ids: list[uuid.UUID]) -> int:
    return sum(1 for row in ledger(job_ids).values() if row.status == JobStatus.RUNNING)


def _succeeded_count(job_ids: list[uuid.UUID]) -> int:
    return sum(1 for row in ledger(job_ids).values() if row.status == JobStatus.SUCCEEDED)


def _subscription_id(workspace_id: int) -> int:
    with session_scope() as session:
        return session.execute(select(Subscription.id).where(Subscription.workspace_id == workspace_id)).scalar_one()


def _usage_batches(workspace_id: int, jobs: int, per_job: int, tag: str) -> list[dict[str, Any]]:
    subscription_id = _subscription_id(workspace_id)
    now = datetime.now(UTC).isoformat()
    return [
        {
            "workspace_id": workspace_id,
            "events": [
                {
                    "event_id": f"{tag}-{j}-{e}",
                    "subscription_id": subscription_id,
                    "metric": "emails_sent",
                    "quantity": 1,
                    "occurred_at": now,
                }
                for e in range(per_job)
            ],
        }
        for j in range(jobs)
    ]


def _usage_event_ids(workspace_id: int) -> list[str]:
    with session_scope() as session:
        return list(
            session.execute(select(UsageEvent.event_id).where(UsageEvent.workspace_id == workspace_id)).scalars()
        )


def test_sigkill_of_busy_pool_processes_loses_nothing_and_runs_nothing_twice(db_url: str, report_fault: Report) -> None:
    victim = WorkerProcess(queues=["default"], concurrency=2)
    bystander = WorkerProcess(queues=["default"], concurrency=1)
    for worker in (victim, bystander):
        worker.start(wait=False)
    with victim, bystander:
        victim.wait_ready()
        bystander.wait_ready()
        items = record_jobs("system.ping", [{"message": f"kill-{i}", "sleep_seconds": 1.5} for i in range(12)])
        ids = [item.id for item in items]
        publish(items)
        # Every slot busy (2 on the victim, 1 on the bystander): the victim's pool processes are mid-task.
        wait_until(lambda: _running_count(ids) >= 3, 60, 0.05, "three jobs running at once")
        killed = victim.pool_pids()
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        rows = wait_all_succeeded(ids, timeout=120)
        runs = completions([victim, bystander], ids)
        report_fault(outcome("SIGKILL pool processes", len(killed), ids, runs))
        assert victim.proc is not None and victim.proc.poll() is None, "the worker itself must survive"

    lost = [row for row in rows.values() if row.lost_runs]
    assert 1 <= len(lost) <= len(killed)
    for row in rows.values():
        assert row.status == JobStatus.SUCCEEDED
        assert row.attempts == row.lost_runs + 1
        assert row.lost_runs in (0, 1)
        assert row.result == {"message": row.args["message"], "job_id": str(row.id)}
    assert runs == {job_id: 1 for job_id in ids}
    with session_scope() as session:
        messages = session.execute(
            select(func.count()).select_from(Job).where(Job.args["message"].astext.like("kill-%"))
        ).scalar_one()
    assert messages == 12


def test_a_redis_restart_mid_run_loses_no_job_and_the_workers_consume_again(db_url: str, report_fault: Report) -> None:
    broker = RedisServer().start()
    env = {"REDIS_URL": broker.url, "REDELIVER_GRACE_SECONDS": "3"}
    worker = WorkerProcess(queues=["default"], concurrency=2, env=env)
    beat = FastBeat(["system.redeliver_stale", "operations.recover_orphans"], interval=1.0, env=env)
    try:
        worker.start()
        beat.start()
        pid = worker.proc.pid if worker.proc else None
        items = record_jobs("system.ping", [{"message": f"redis-{i}", "sleep_seconds": 0.3} for i in range(30)])
        ids = [item.id for item in items]
        publish_to(broker.url, items)
        wait_until(lambda: _succeeded_count(ids) >= 6, 60, 0.05, "the run to be under way")
        # Redis dies with the queue (no persistence) and comes back empty on the same port.
        broker.restart()
        rows = wait_all_succeeded(ids, timeout=120)
        runs = completions([worker], ids)
        report_fault(outcome("Redis restart mid-run", 1, ids, runs))
        assert worker.proc is not None and worker.proc.poll() is None and worker.proc.pid == pid
        assert "Connection to broker lost" in worker.log_text() or "Cannot connect to" in worker.log_text()
    finally:
        beat.stop()
        worker.stop()
        broker.close()

    assert runs == {job_id: 1 for job_id in ids}
    for row in rows.values():
        assert row.status == JobStatus.SUCCEEDED
        assert row.result == {"message": row.args["message"], "job_id": str(row.id)}
        assert row.attempts == row.lost_runs + 1


def test_postgresql_unreachable_for_ten_seconds_jobs_retry_and_nothing_is_lost(
    db_url: str, make_workspace: Callable[..., int], report_fault: Report
) -> None:
    url = make_url(db_url)
    workspace_id = make_workspace(plan="enterprise")
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        env = {
            "DATABASE_URL": url.set(host=proxy.host, port=proxy.port).render_as_string(hide_password=False),
            # The sweeper (it runs in the worker) republishes a queued job 5 s after its last publish.
            "REDELIVER_GRACE_SECONDS": "5",
        }
        worker = WorkerProcess(queues=["billing", "default"], concurrency=2, env=env)
        beat = FastBeat(["system.redeliver_stale", "operations.recover_orphans"], interval=2.0, env=env)
        try:
            worker.start()
            beat.start()
            pid = worker.proc.pid if worker.proc else None
            batches = _usage_batches(workspace_id, jobs=20, per_job=5, tag=f"pg-{uuid.uuid4().hex[:6]}")
            before = record_jobs("billing.ingest_usage", batches[:5], workspace_id=workspace_id)
            slow = record_jobs("system.ping", [{"message": f"pg-{i}", "sleep_seconds": 3.0} for i in range(2)])
            publish(before + slow)
            # A run in the middle of its work when the database goes away.
            wait_until(lambda: _running_count([s.id for s in slow]) >= 1, 60, 0.05, "a slow job to be running")
            proxy.cut()
            cut_at = time.monotonic()
            during = record_jobs("billing.ingest_usage", batches[5:15], workspace_id=workspace_id)
            publish(during)
            time.sleep(max(0.0, 10.0 - (time.monotonic() - cut_at)))
            proxy.restore()
            after = record_jobs("billing.ingest_usage", batches[15:], workspace_id=workspace_id)
            publish(after)
            ids = [item.id for item in before + slow + during + after]
            rows = wait_all_succeeded(ids, timeout=150)
            runs = completions([worker], ids)
            report_fault(outcome("PostgreSQL unreachable 10 s", 1, ids, runs))
            log = worker.log_text()
            assert worker.proc is not None and worker.proc.poll() is None and worker.proc.pid == pid
            assert proxy.connections_refused > 0, "the drill must really have cut PostgreSQL off"
            assert log.count("event=retrying") >= 1
        finally:
            beat.stop()
            worker.stop()

    assert runs == {job_id: 1 for job_id in ids}
    assert all(row.status == JobStatus.SUCCEEDED for row in rows.values())
    event_ids = _usage_event_ids(workspace_id)
    assert len(event_ids) == 100 and len(set(event_ids)) == 100
    assert sorted(event_ids) == sorted(e["event_id"] for b in batches for e in b["events"])


def test_two_beats_at_once_do_no_periodic_work_twice(
    db_url: str, make_workspace: Callable[..., int], report_fault: Report
) -> None:
    workspace_id = make_workspace(plan="starter")
    subscription_id = _subscription_id(workspace_id)
    now = datetime.now(UTC)
    with session_scope() as session:
        # One billing period ended an hour ago: exactly one invoice is due.
        session.execute(
            update(Subscription)
            .where(Subscription.id == subscription_id)
            .values(
                started_at=now - timedelta(days=31),
                current_period_start=now - timedelta(days=31),
                current_period_end=now - timedelta(hours=1),
            )
        )
    # Jobs whose publish was lost an hour ago: the sweeper (system.redeliver_stale) must publish each once.
    stale = record_jobs("system.ping", [{"message": f"stale-{i}", "sleep_seconds": 0.2} for i in range(6)])
    stale_ids = [item.id for item in stale]
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.id.in_(stale_ids))
            .values(enqueued_at=now - timedelta(hours=1), run_at=now - timedelta(hours=1))
        )

    tasks = ["system.redeliver_stale", "billing.generate_invoices"]
    worker = WorkerProcess(queues=["billing", "default"], concurrency=2)
    beats = [FastBeat(tasks, interval=1.0), FastBeat(tasks, interval=1.0)]
    try:
        worker.start()
        for beat in beats:
            beat.start()
        wait_until(lambda: all(b.sent() >= 8 for b in beats), 90, 0.2, "both beats to send their entries 4 times")
        wait_all_succeeded(stale_ids, timeout=60)
        wait_until(lambda: _invoice_count(subscription_id) >= 1, 60, 0.2, "the invoice")
        for beat in beats:
            beat.stop()
        sent = sum(b.sent() for b in beats)
        # Let every periodic run the beats sent finish before reading the final state.
        wait_until(
            lambda: _unfinished(now, "billing.generate_invoice", "billing.generate_invoices") == 0, 60, 0.2, "runs"
        )
        runs = completions([worker], stale_ids)
        invoices = _invoice_count(subscription_id)
        drill = outcome("two beats at once", 1, stale_ids, runs)
        drill.expected += 1
        drill.completed += min(invoices, 1)
        drill.duplicates += max(0, invoices - 1)
        drill.lost += 1 - min(invoices, 1)
        report_fault(drill)
    finally:
        for beat in beats:
            beat.stop()
        worker.stop()

    assert sent >= 16
    assert invoices == 1
    assert runs == {job_id: 1 for job_id in stale_ids}
    for row in ledger(stale_ids).values():
        assert row.status == JobStatus.SUCCEEDED and row.attempts == 1 and row.lost_runs == 0
    with session_scope() as session:
        period_starts = (
            session.execute(select(Invoice.period_start).where(Invoice.subscription_id == subscription_id))
            .scalars()
            .all()
        )
        succeeded_sweeps = session.execute(
            select(func.count()).where(Job.task == "system.redeliver_stale", Job.status == JobStatus.SUCCEEDED)
        ).scalar_one()
    assert [p.isoformat() for p in period_starts] == [(now - timedelta(days=31)).isoformat()]
    assert succeeded_sweeps >= 2


def _invoice_count(subscription_id: int) -> int:
    with session_scope() as session:
        return session.execute(
            select(func.count()).select_from(Invoice).where(Invoice.subscription_id == subscription_id)
        ).scalar_one()


def _unfinished(since: datetime, *tasks: str) -> int:
    """This drill's runs of the tasks not finished yet (rows of earlier tests are not its business)."""
    with session_scope() as session:
        return session.execute(
            select(func.count())
            .select_from(Job)
            .where(
                Job.task.in_(tasks),
                Job.enqueued_at >= since,
                Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING]),
            )
        ).scalar_one()


def test_a_message_delivered_twice_runs_once(
    db_url: str, make_workspace: Callable[..., int], report_fault: Report
) -> None:
    from workers.app import app

    workspace_id = make_workspace(plan="enterprise")
    batches = _usage_batches(workspace_id, jobs=10, per_job=3, tag=f"dup-{uuid.uuid4().hex[:6]}")
    with WorkerProcess(queues=["billing", "default"], concurrency=3) as worker:
        usage = record_jobs("billing.ingest_usage", batches, workspace_id=workspace_id)
        slow = record_jobs("system.ping", [{"message": f"dup-{i}", "sleep_seconds": 1.0} for i in range(3)])
        items = usage + slow
        with app.producer_or_acquire() as producer:
            for item in items:
                # The same message twice, back to back: both copies can be taken by two pool processes at once.
                for _ in range(2):
                    app.send_task(item.task, kwargs=item.args, task_id=str(item.id), producer=producer)
        ids = [item.id for item in items]
        rows = wait_all_succeeded(ids, timeout=90)
        # The second copies finish too (skipped): wait until no message is left in the queues.
        wait_until(lambda: "event=skipped" in worker.log_text() and _queues_empty(), 60, 0.2, "the copies")
        runs = completions([worker], ids)
        report_fault(outcome("message delivered twice", len(items), ids, runs))

    assert runs == {job_id: 1 for job_id in ids}
    for row in rows.values():
        assert row.status == JobStatus.SUCCEEDED and row.attempts == 1
    event_ids = _usage_event_ids(workspace_id)
    assert len(event_ids) == 30 and len(set(event_ids)) == 30
    with session_scope() as session:
        total = session.execute(
            text("SELECT coalesce(sum(quantity), 0) FROM usage_events WHERE workspace_id = :w"), {"w": workspace_id}
        ).scalar_one()
    assert total == 30


def _queues_empty() -> bool:
    from workers.ops_cli import queue_depths
    from workers.settings import get_settings

    depths = queue_depths(get_settings().redis_url)
    # Only the queues this drill's worker consumes: other tests may leave messages for other queues.
    return depths["billing"] == 0 and depths["default"] == 0
