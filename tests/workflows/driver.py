"""Drive a run without Celery: take due workflows.run_node rows from the real ledger and run them in-process.

This exercises the engine's plain functions and the real ledger (idempotency keys, run_at), the way the
worker does, so the logic tests can also control time with freezegun. The Celery path has its own tests.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.core import Job, JobStatus
from tasks.workflows import engine
from workers.db import session_scope
from workers.ledger import record_job, utcnow


class LedgerEnqueue:
    """``JobTask.enqueue_child``'s contract on a given session; counts every call, before ledger de-duplication."""

    calls: Counter[str]

    def __init__(self, session: Session, calls: Counter[str], lock: threading.Lock) -> None:
        self.session = session
        self.calls = calls
        self.lock = lock

    def __call__(
        self,
        task: str,
        kwargs: dict[str, Any],
        *,
        run_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        with self.lock:
            self.calls[f"{kwargs.get('node_id')}:{'resume' if run_at else 'run'}"] += 1
        job, _ = record_job(
            self.session,
            task,
            kwargs,
            workspace_id=kwargs["workspace_id"],
            idempotency_key=idempotency_key,
            run_at=run_at,
        )
        return job.id


class Driver:
    def __init__(self, workspace_id: int) -> None:
        self.workspace_id = workspace_id
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def enqueue_for(self, session: Session) -> LedgerEnqueue:
        return LedgerEnqueue(session, self.calls, self.lock)

    def execute(self, workflow_id: int, payload: dict[str, Any]) -> int:
        with session_scope() as session:
            run = engine.start_run(
                session,
                workspace_id=self.workspace_id,
                workflow_id=workflow_id,
                trigger_payload=payload,
                enqueue=self.enqueue_for(session),
            )
            return run.id

    def step(self, now: datetime | None = None, on_error: Callable[[Exception], None] | None = None) -> bool:
        """Run one due node job; False when none is due."""
        now = now or utcnow()
        with session_scope() as session:
            job = session.execute(
                select(Job)
                .where(
                    Job.workspace_id == self.workspace_id,
                    Job.task == engine.RUN_NODE_TASK,
                    Job.status == JobStatus.QUEUED,
                    Job.run_at <= now,
                )
                .order_by(Job.enqueued_at, Job.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).scalar_one_or_none()
            if job is None:
                return False
            args = dict(job.args)
            with session_scope() as attempt_session:
                engine.mark_node_started(attempt_session, now=now, **args)
            try:
                with session.begin_nested():
                    result = engine.run_node(session, enqueue=self.enqueue_for(session), **args)
            except Exception as error:
                job.status = JobStatus.FAILED
                job.error = str(error)
                session.commit()
                with session_scope() as failure_session:
                    engine.record_node_failure(failure_session, reason=str(error), **args)
                if on_error is None:
                    raise
                on_error(error)
                return True
            job.status = JobStatus.SUCCEEDED
            job.result = result
            job.finished_at = func.now()
        return True

    def drain(self, now: datetime | None = None, limit: int = 10_000) -> int:
        steps = 0
        while steps < limit and self.step(now):
            steps += 1
        return steps

    def drain_concurrently(self, threads: int) -> list[Exception]:
        errors: list[Exception] = []

        def work() -> None:
            idle = 0
            # Another thread may still be committing the job that enqueues the next ones: look a few times.
            while idle < 20:
                try:
                    ran = self.step()
                except Exception as error:
                    errors.append(error)
                    return
                idle = 0 if ran else idle + 1
                if not ran:
                    threading.Event().wait(0.02)

        pool = [threading.Thread(target=work) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(timeout=120)
        return errors
