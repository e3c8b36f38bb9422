"""system.ping through our job base (validation, ledger claim, session, outcome) against a bare Celery no-op,
on the same broker with the same worker pool, in the same run."""

from __future__ import annotations

import os
import sys
import time
import uuid

import redis
from sqlalchemy import func, select

from benchmarks.common import bench_environment, report
from models.core import Job, JobStatus
from tests.support.services import WorkerProcess, wait_until
from workers.db import session_scope
from workers.ledger import Publishable, publish, record_job

JOBS = int(os.environ.get("BENCH_PING_JOBS", "2000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "2"))


def _ours(jobs: int) -> float:
    with session_scope() as session:
        items = []
        for i in range(jobs):
            job, _ = record_job(session, "system.ping", {"message": f"bench-{i}"})
            items.append(Publishable(job.id, job.task, job.args))
    ids = [item.id for item in items]
    started = time.perf_counter()
    publish(items)

    def done() -> bool:
        with session_scope() as session:
            finished = session.execute(
                select(func.count()).where(Job.id.in_(ids), Job.status == JobStatus.SUCCEEDED)
            ).scalar_one()
        return finished == jobs

    wait_until(done, 600, 0.05, "ping jobs")
    return time.perf_counter() - started


def _bare(jobs: int) -> float:
    from benchmarks.bare_app import bare

    run = uuid.uuid4().hex
    counter = redis.Redis.from_url(os.environ["REDIS_URL"])
    started = time.perf_counter()
    with bare.producer_or_acquire() as producer:
        for _ in range(jobs):
            bare.send_task("bare.noop", args=[run], queue="bare", producer=producer)
    wait_until(lambda: int(counter.get(f"bench:bare:{run}") or 0) >= jobs, 600, 0.05, "bare no-ops")
    return time.perf_counter() - started


def main() -> None:
    with bench_environment("ping"):
        with WorkerProcess(queues=["default"], concurrency=CONCURRENCY, name="bench-ours"):
            _ours(50)  # warm up connections and imports
            ours_seconds = _ours(JOBS)
        with WorkerProcess(queues=["bare"], concurrency=CONCURRENCY, name="bench-bare", app="benchmarks.bare_app:bare"):
            _bare(50)
            bare_seconds = _bare(JOBS)
    report(
        "ping",
        f"{JOBS} jobs, prefork -c {CONCURRENCY}, one worker each",
        ours=("system.ping via JobTask + ledger", JOBS / ours_seconds, "jobs/s"),
        bare=("bare Celery no-op", JOBS / bare_seconds, "jobs/s"),
    )


if __name__ == "__main__":
    main()
    sys.exit(0)
