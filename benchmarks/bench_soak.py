"""Soak: mixed jobs at a steady rate through the API (uvicorn) to real workers, for minutes.

    python -m benchmarks soak

Prints throughput, p50/p99 latency from enqueue (the ledger's enqueued_at) to succeeded (finished_at), each
worker's resident memory at the start and the end, and, as the bare baseline, the same rate of `send_task`
to a no-op task on a bare Celery app (send-to-done latency), measured in the same run.

Knobs: BENCH_SOAK_SECONDS (300), BENCH_SOAK_RATE (jobs per second offered, 20), BENCH_SOAK_BARE_SECONDS (30),
BENCH_DATABASE / BENCH_REDIS_DB (common.bench_environment).
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import psutil
from sqlalchemy import insert, select, text

from tests.support.services import WorkerProcess, wait_until

SUITE = "soak"
SECONDS = float(os.environ.get("BENCH_SOAK_SECONDS", "300"))
RATE = float(os.environ.get("BENCH_SOAK_RATE", "20"))
BARE_SECONDS = float(os.environ.get("BENCH_SOAK_BARE_SECONDS", "30"))

# The mix: (task, share). Every kind of worker and three areas; cheap enough that the rate, not the work, is
# what the soak holds steady.
MIX: tuple[tuple[str, float], ...] = (
    ("system.ping", 0.4),
    ("billing.ingest_usage", 0.3),
    ("ai.scan_content", 0.15),
    ("ai.safety_stats", 0.15),
)


@dataclass
class WorkerMemory:
    name: str
    start_mib: float
    end_mib: float = 0.0


@dataclass
class SoakResult:
    seconds: float
    offered_rate: float
    sent: int
    refused: int
    jobs: list[uuid.UUID]
    by_task: Counter[str]
    statuses: Counter[str] = field(default_factory=Counter)
    throughput: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    memory: list[WorkerMemory] = field(default_factory=list)
    usage_events_sent: int = 0
    workspace_id: int = 0

    def lines(self) -> list[str]:
        out = [
            f"offered {self.offered_rate:g} jobs/s for {self.seconds:g} s: {self.sent} sent, {self.refused} refused, "
            f"by task {dict(self.by_task)}",
            f"outcomes: {dict(self.statuses)}",
            f"throughput {self.throughput:.1f} jobs/s; enqueue->succeeded p50 {self.p50_ms:.1f} ms, "
            f"p99 {self.p99_ms:.1f} ms",
        ]
        out += [f"worker {m.name}: RSS {m.start_mib:.1f} MiB at start, {m.end_mib:.1f} MiB at end" for m in self.memory]
        return out


def rss_mib(worker: WorkerProcess) -> float:
    """The worker's resident memory: its main process and every pool process."""
    assert worker.proc is not None
    try:
        main = psutil.Process(worker.proc.pid)
        family = [main, *main.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for proc in family:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / (1024 * 1024)


def create_tenant(name: str) -> tuple[int, int, str]:
    """An enterprise workspace (rate limit 100/s) with a subscription and an API key: (workspace, subscription, key)."""
    from api.keys import generate_key
    from models.core import ApiKey, Subscription, SubscriptionStatus, Workspace
    from workers.db import session_scope

    key = generate_key()
    with session_scope() as s:
        workspace_id = s.execute(insert(Workspace).values(name=name).returning(Workspace.id)).scalar_one()
        subscription_id = s.execute(
            insert(Subscription)
            .values(
                workspace_id=workspace_id,
                plan_code="enterprise",
                status=SubscriptionStatus.ACTIVE,
                started_at=text("now()"),
                billing_anchor_day=datetime.now(UTC).day,
                current_period_start=text("now()"),
                current_period_end=text("now() + interval '30 days'"),
            )
            .returning(Subscription.id)
        ).scalar_one()
        s.execute(insert(ApiKey).values(workspace_id=workspace_id, prefix=key.prefix, secret_hash=key.secret_hash))
    return workspace_id, subscription_id, key.plaintext


def job_body(task: str, n: int, workspace_id: int, subscription_id: int, run: str) -> dict[str, Any]:
    if task == "system.ping":
        return {"task": task, "args": {"message": f"soak-{n}"}}
    if task == "billing.ingest_usage":
        events = [
            {
                "event_id": f"{run}-{n}-{e}",
                "subscription_id": subscription_id,
                "metric": "emails_sent",
                "quantity": 1,
                "occurred_at": datetime.now(UTC).isoformat(),
            }
            for e in range(3)
        ]
        return {"task": task, "args": {"workspace_id": workspace_id, "events": events}}
    if task == "ai.scan_content":
        content = f"Hi Dana, following up on our call #{n}: can we meet Tuesday to go through the pilot plan?"
        return {"task": task, "args": {"workspace_id": workspace_id, "content": content}}
    return {"task": task, "args": {"workspace_id": workspace_id}}


def start_workers(env: dict[str, str] | None = None) -> list[WorkerProcess]:
    suffix = uuid.uuid4().hex[:6]
    workers = [
        WorkerProcess(queues=["billing", "analytics", "default"], concurrency=2, name=f"soak-{suffix}", env=env),
        WorkerProcess(queues=["ai"], pool="threads", concurrency=4, name=f"soak-ai-{suffix}", env=env),
    ]
    for worker in workers:
        worker.start(wait=False)
    for worker in workers:
        worker.wait_ready()
    return workers


def run_soak(api_url: str, workers: list[WorkerProcess], seconds: float, rate: float) -> SoakResult:
    """Offer `rate` jobs/s through POST /v1/jobs for `seconds`, wait for every job, and measure."""
    from models.core import TERMINAL_JOB_STATUSES, Job
    from workers.db import session_scope

    run = uuid.uuid4().hex[:8]
    workspace_id, subscription_id, key = create_tenant(f"soak-{run}")
    # Warm every kind of job once (imports, first connections) before the clock starts.
    tasks = [task for task, _ in MIX]
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        warm = [client.post("/v1/jobs", json=job_body(t, -1 - i, workspace_id, subscription_id, run)) for i, t in
                enumerate(tasks)]  # fmt: skip
        warm_ids = [uuid.UUID(r.json()["id"]) for r in warm]
        wait_until(lambda: _finished(warm_ids) == len(warm_ids), 120, 0.2, "the warm-up jobs")
        memory = [WorkerMemory(w.name, rss_mib(w)) for w in workers]

        shares = Counter({task: 0 for task in tasks})
        sent: list[uuid.UUID] = []
        refused = 0
        interval = 1.0 / rate
        started = time.monotonic()
        n = 0
        while True:
            due = started + n * interval
            now = time.monotonic()
            if due - started >= seconds:
                break
            if due > now:
                time.sleep(due - now)
            # Weighted round robin: the task furthest below its share goes next (a steady, exact mix).
            task = min(tasks, key=lambda t: shares[t] / dict(MIX)[t])
            response = client.post("/v1/jobs", json=job_body(task, n, workspace_id, subscription_id, run))
            if response.status_code == 202:
                sent.append(uuid.UUID(response.json()["id"]))
                shares[task] += 1
            else:
                refused += 1
            n += 1
    wait_until(lambda: _finished(sent) == len(sent), 180, 0.5, f"{len(sent)} soak jobs to finish")
    for item in memory:
        item.end_mib = rss_mib(next(w for w in workers if w.name == item.name))

    with session_scope() as session:
        rows = session.execute(select(Job.status, Job.enqueued_at, Job.finished_at).where(Job.id.in_(sent))).all()
    latencies = sorted(
        (r.finished_at - r.enqueued_at).total_seconds() * 1000 for r in rows if r.status.value == "succeeded"
    )
    first = min(r.enqueued_at for r in rows)
    last = max(r.finished_at for r in rows if r.status in TERMINAL_JOB_STATUSES)
    result = SoakResult(
        seconds=seconds,
        offered_rate=rate,
        sent=len(sent),
        refused=refused,
        jobs=sent,
        by_task=Counter(shares),
        statuses=Counter(r.status.value for r in rows),
        throughput=len(latencies) / max((last - first).total_seconds(), 1e-9),
        p50_ms=_percentile(latencies, 50),
        p99_ms=_percentile(latencies, 99),
        memory=memory,
        # Three events per ingest job, the warm-up job included.
        usage_events_sent=3 * (shares["billing.ingest_usage"] + 1),
        workspace_id=workspace_id,
    )
    return result


def _finished(job_ids: list[uuid.UUID]) -> int:
    from sqlalchemy import func

    from models.core import TERMINAL_JOB_STATUSES, Job
    from workers.db import session_scope

    if not job_ids:
        return 0
    with session_scope() as session:
        return session.execute(
            select(func.count()).where(Job.id.in_(job_ids), Job.status.in_(TERMINAL_JOB_STATUSES))
        ).scalar_one()


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


def run_bare(redis_url: str, seconds: float, rate: float) -> tuple[float, float, float]:
    """The same offered rate of send_task to the bare no-op task; returns (throughput, p50 ms, p99 ms)."""
    import redis

    from benchmarks.bare_app import LATENCY_KEY, bare

    client = redis.Redis.from_url(redis_url)
    client.delete(LATENCY_KEY)
    with WorkerProcess(queues=["bare"], concurrency=2, name=f"soak-bare-{uuid.uuid4().hex[:6]}",
                       app="benchmarks.bare_app:bare"):  # fmt: skip
        interval = 1.0 / rate
        started = time.monotonic()
        n = 0
        with bare.producer_or_acquire() as producer:
            while (due := started + n * interval) - started < seconds:
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                bare.send_task("bare.soak_noop", kwargs={"sent_at": time.time()}, producer=producer)
                n += 1
        wait_until(lambda: client.llen(LATENCY_KEY) >= n, 120, 0.2, "the bare tasks")
        elapsed = time.monotonic() - started
    latencies = sorted(float(v) * 1000 for v in client.lrange(LATENCY_KEY, 0, -1))
    client.delete(LATENCY_KEY)
    return n / elapsed, _percentile(latencies, 50), _percentile(latencies, 99)


def main() -> None:
    from benchmarks.bench_api import Server
    from benchmarks.common import bench_environment, report

    with bench_environment(SUITE) as isolated:
        env = {**os.environ, "DATABASE_URL": isolated.database_url, "REDIS_URL": isolated.redis_url}
        workers = start_workers()
        server = Server("api.main:app", env)
        try:
            result = run_soak(server.url, workers, SECONDS, RATE)
        finally:
            server.stop()
            for worker in workers:
                worker.stop()
        for line in result.lines():
            print(f"[{SUITE}] {line}")
        bare_rate, bare_p50, bare_p99 = run_bare(isolated.redis_url, BARE_SECONDS, RATE)
        print(f"[{SUITE}] bare: {bare_rate:.1f} tasks/s, send->done p50 {bare_p50:.1f} ms, p99 {bare_p99:.1f} ms")
        report(
            SUITE,
            f"{RATE:g} mixed jobs/s offered for {SECONDS:g} s through POST /v1/jobs; bare: send_task to a no-op "
            f"task at the same rate for {BARE_SECONDS:g} s",
            ours=("p50 latency enqueue->succeeded (API, ledger, job base)", result.p50_ms, "ms"),
            bare=("p50 latency send->done (bare Celery no-op)", bare_p50, "ms"),
            higher_is_better=False,
        )


if __name__ == "__main__":
    main()
