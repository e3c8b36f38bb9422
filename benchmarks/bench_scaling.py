"""Scaling out: the same jobs on one worker process, then on two with different node names on the same queue.

    python -m benchmarks scaling

"ours" is two worker processes, "bare" one; the ratio is the scale-out factor. Also measured, for sizing: the
Redis memory one queued job message takes, and the PostgreSQL connections one busy worker process holds.

Knobs: BENCH_SCALING_JOBS (400), BENCH_SCALING_SLEEP (seconds of waiting per job, 0.05: I/O-bound work, which is
what more processes help with on a small machine), BENCH_SCALING_CONCURRENCY (pool size per worker, 2).
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import redis
from sqlalchemy import text

from tests.faults.drills import record_jobs, wait_all_succeeded
from tests.support.services import WorkerProcess
from workers.ledger import publish

SUITE = "scaling"
JOBS = int(os.environ.get("BENCH_SCALING_JOBS", "400"))
SLEEP = float(os.environ.get("BENCH_SCALING_SLEEP", "0.05"))
CONCURRENCY = int(os.environ.get("BENCH_SCALING_CONCURRENCY", "2"))
QUEUED_MESSAGES = 5000


def throughput(workers: int, database: str) -> tuple[float, int]:
    """Jobs per second from first publish to last success, and the most PostgreSQL connections seen per worker."""
    suffix = uuid.uuid4().hex[:6]
    procs = [
        WorkerProcess(queues=["default"], concurrency=CONCURRENCY, name=f"scale-{suffix}-{i}") for i in range(workers)
    ]
    for proc in procs:
        proc.start(wait=False)
    peak = {"connections": 0}
    stop = threading.Event()

    def watch() -> None:
        from workers.db import get_engine

        while not stop.is_set():
            with get_engine().connect() as conn:
                count = conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"),
                    {"d": database},
                ).scalar_one()
            peak["connections"] = max(peak["connections"], int(count))
            time.sleep(0.2)

    try:
        for proc in procs:
            proc.wait_ready()
        items = record_jobs("system.ping", [{"message": f"s{i}", "sleep_seconds": SLEEP} for i in range(JOBS)])
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.monotonic()
        publish(items)
        wait_all_succeeded([i.id for i in items], timeout=600)
        elapsed = time.monotonic() - started
        stop.set()
        watcher.join(timeout=5)
    finally:
        stop.set()
        for proc in procs:
            proc.stop()
    # The benchmark's own connections (enqueue, polling) live in this process: pg_stat_activity counts the rest.
    return JOBS / elapsed, peak["connections"] // workers


def bytes_per_queued_message(redis_url: str) -> float:
    from workers.app import app

    client = redis.Redis.from_url(redis_url)
    queue = "analytics"  # no worker consumes it during this measurement
    client.delete(queue)
    before = int(client.info("memory")["used_memory"])
    with app.producer_or_acquire() as producer:
        for _ in range(QUEUED_MESSAGES):
            app.send_task(
                "growth.detect_expansion", kwargs={}, task_id=str(uuid.uuid4()), producer=producer, queue=queue
            )
    after = int(client.info("memory")["used_memory"])
    client.delete(queue)
    return (after - before) / QUEUED_MESSAGES


def main() -> None:
    from benchmarks.common import bench_environment, report

    with bench_environment(SUITE) as isolated:
        one, one_conns = throughput(1, isolated.database)
        two, two_conns = throughput(2, isolated.database)
        per_message = bytes_per_queued_message(isolated.redis_url)
    print(f"[{SUITE}] {JOBS} jobs of {SLEEP * 1000:.0f} ms waiting each, prefork -c {CONCURRENCY} per worker process")
    print(f"[{SUITE}] 1 worker: {one:.1f} jobs/s, up to {one_conns} PostgreSQL connections per worker")
    print(f"[{SUITE}] 2 workers: {two:.1f} jobs/s, up to {two_conns} PostgreSQL connections per worker")
    print(f"[{SUITE}] Redis memory per queued job message: {per_message:.0f} bytes")
    report(
        SUITE,
        f"{JOBS} system.ping jobs ({SLEEP * 1000:.0f} ms each) on the default queue",
        ours=("2 worker processes, different node names", two, "jobs/s"),
        bare=("1 worker process", one, "jobs/s"),
    )


if __name__ == "__main__":
    main()
