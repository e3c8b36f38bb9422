"""A 30-second soak through the API to real workers: every job succeeds, once, and the side effects are exact.

The same code as `python -m benchmarks soak` (benchmarks/bench_soak.py), shorter and at a gentler rate; the
figures are printed, never asserted (speed belongs in the benchmark).
"""

from __future__ import annotations

import os
from collections import Counter

from sqlalchemy import func, select

from benchmarks.bench_api import Server
from benchmarks.bench_soak import MIX, run_soak, start_workers
from models.core import Job, UsageEvent
from tests.faults.drills import completions
from workers.db import session_scope

SOAK_SECONDS = 30.0
SOAK_RATE = 8.0


def test_a_thirty_second_mixed_soak_completes_every_job_exactly_once(db_url: str, capsys) -> None:
    workers = start_workers()
    server = Server("api.main:app", dict(os.environ))
    try:
        result = run_soak(server.url, workers, SOAK_SECONDS, SOAK_RATE)
        runs = completions(workers, result.jobs)
    finally:
        server.stop()
        for worker in workers:
            worker.stop()
    with capsys.disabled():
        for line in result.lines():
            print(f"\n[soak] {line}", end="")
        print()

    assert result.refused == 0
    assert result.sent >= SOAK_SECONDS * SOAK_RATE * 0.5
    assert set(result.by_task) == {task for task, _ in MIX} and all(result.by_task.values())
    assert result.statuses == Counter({"succeeded": result.sent})
    assert runs == {job_id: 1 for job_id in result.jobs}
    with session_scope() as session:
        attempts = session.execute(select(Job.attempts).where(Job.id.in_(result.jobs))).scalars().all()
        usage_events = session.execute(
            select(func.count()).select_from(UsageEvent).where(UsageEvent.workspace_id == result.workspace_id)
        ).scalar_one()
    assert attempts == [1] * result.sent
    assert usage_events == result.usage_events_sent
    assert all(m.start_mib > 0 and m.end_mib > 0 for m in result.memory)
    assert result.p50_ms > 0 and result.p99_ms >= result.p50_ms
