"""What the fault drills share: their own Redis, a fast beat, publishing to another broker, counting runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from models.core import Job, JobStatus
from tests.support.env import ROOT
from tests.support.services import WorkerProcess, wait_until
from workers.db import session_scope
from workers.ledger import Publishable, record_job

_SUCCEEDED = re.compile(r"job=([0-9a-f-]{36}) task=\S+ event=succeeded")


@dataclass
class FaultOutcome:
    """One line of the suite's summary."""

    fault: str
    injected: int
    expected: int
    completed: int
    duplicates: int
    lost: int

    def line(self) -> str:
        return (
            f"{self.fault:<28} faults injected={self.injected:<3} jobs expected={self.expected:<4} "
            f"completed={self.completed:<4} duplicates={self.duplicates:<3} lost={self.lost}"
        )


class FastBeat:
    """`python -m tests.faults.fast_beat`: the real beat service firing the given entries every few seconds."""

    def __init__(self, tasks: Sequence[str], interval: float = 1.0, env: dict[str, str] | None = None) -> None:
        self.tasks = list(tasks)
        self.interval = interval
        self.env = {**os.environ, **(env or {})}
        self.log_path = os.path.join(tempfile.gettempdir(), f"artisan-beat-{uuid.uuid4().hex[:8]}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> FastBeat:
        cmd = [sys.executable, "-m", "tests.faults.fast_beat", "--interval", str(self.interval)]
        for task in self.tasks:
            cmd += ["--task", task]
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def sent(self) -> int:
        with open(self.log_path, errors="replace") as fh:
            return fh.read().count("Scheduler: Sending due task")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def record_jobs(task: str, args_list: Iterable[dict[str, Any]], workspace_id: int | None = None) -> list[Publishable]:
    """Write jobs to the ledger (committed) without publishing them."""
    items = []
    with session_scope() as session:
        for args in args_list:
            job, _ = record_job(session, task, args, workspace_id=workspace_id)
            items.append(Publishable(job.id, job.task, job.args))
    return items


def publish_to(broker_url: str, items: Sequence[Publishable]) -> None:
    """Publish ledger rows to another broker than the test process's own (the drill's Redis)."""
    from workers.app import app

    with app.connection_for_write(broker_url) as conn:
        producer = app.amqp.Producer(conn, auto_declare=True)
        for item in items:
            app.send_task(item.task, kwargs=item.args, task_id=str(item.id), producer=producer)


def completions(workers: Iterable[WorkerProcess], job_ids: Iterable[uuid.UUID]) -> Counter[uuid.UUID]:
    """How many times each job's task body ran to success, read from every worker's log."""
    wanted = {str(j) for j in job_ids}
    counts: Counter[uuid.UUID] = Counter()
    for worker in workers:
        for match in _SUCCEEDED.finditer(worker.log_text()):
            if match.group(1) in wanted:
                counts[uuid.UUID(match.group(1))] += 1
    return counts


def ledger(job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Job]:
    with session_scope() as session:
        rows = session.execute(select(Job).where(Job.id.in_(list(job_ids)))).scalars().all()
        for row in rows:
            session.expunge(row)
    return {row.id: row for row in rows}


def wait_all_succeeded(job_ids: Sequence[uuid.UUID], timeout: float = 90.0) -> dict[uuid.UUID, Job]:
    def done() -> dict[uuid.UUID, Job] | None:
        rows = ledger(job_ids)
        ok = len(rows) == len(job_ids) and all(r.status == JobStatus.SUCCEEDED for r in rows.values())
        return rows if ok else None

    try:
        return wait_until(done, timeout, 0.25, f"{len(job_ids)} jobs to succeed")
    except TimeoutError:
        rows = ledger(job_ids)
        states = Counter(r.status.value for r in rows.values())
        raise AssertionError(f"not every job succeeded within {timeout:.0f} s: {dict(states)}") from None


def outcome(
    fault: str,
    injected: int,
    job_ids: Sequence[uuid.UUID],
    runs: Counter[uuid.UUID],
) -> FaultOutcome:
    rows = ledger(job_ids)
    completed = sum(1 for r in rows.values() if r.status == JobStatus.SUCCEEDED)
    return FaultOutcome(
        fault=fault,
        injected=injected,
        expected=len(job_ids),
        completed=completed,
        duplicates=sum(max(0, n - 1) for n in runs.values()),
        lost=len(job_ids) - completed,
    )
