"""Scaling out: two worker processes with different node names on the same queues share the work, and no job
runs on both (README, "Scaling out")."""

from __future__ import annotations

from collections import Counter

from models.core import JobStatus
from tests.faults.drills import completions, record_jobs, wait_all_succeeded
from tests.support.services import WorkerProcess
from workers.ledger import publish


def test_two_workers_on_the_same_queues_split_the_work_and_do_nothing_twice(db_url: str) -> None:
    first = WorkerProcess(queues=["billing", "default"], concurrency=1, name="scale-a")
    second = WorkerProcess(queues=["billing", "default"], concurrency=1, name="scale-b")
    # Started side by side (as on two hosts), then both awaited.
    for worker in (first, second):
        worker.start(wait=False)
    with first, second:
        first.wait_ready()
        second.wait_ready()
        items = record_jobs("system.ping", [{"message": f"scale-{i}", "sleep_seconds": 0.2} for i in range(40)])
        ids = [item.id for item in items]
        publish(items)
        rows = wait_all_succeeded(ids, timeout=120)
        per_worker = {w.name: completions([w], ids) for w in (first, second)}

    done_by_first, done_by_second = per_worker["scale-a"], per_worker["scale-b"]
    # Both took a share (with prefetch 1, a worker busy 0.2 s per job cannot take them all).
    assert sum(done_by_first.values()) >= 5 and sum(done_by_second.values()) >= 5
    assert not set(done_by_first) & set(done_by_second), "a job ran on both workers"
    assert done_by_first + done_by_second == Counter({job_id: 1 for job_id in ids})
    assert all(row.status == JobStatus.SUCCEEDED and row.attempts == 1 for row in rows.values())
