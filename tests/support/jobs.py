"""Enqueue through the ledger and wait for outcomes, as the API and the main app do."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select

from models.core import TERMINAL_JOB_STATUSES, Job
from tests.support.services import wait_until
from workers.db import session_scope
from workers.ledger import Publishable, publish, record_job


def enqueue(
    task: str,
    args: dict[str, Any],
    *,
    workspace_id: int | None = None,
    idempotency_key: str | None = None,
    run_at: datetime | None = None,
    publish_now: bool = True,
) -> uuid.UUID:
    with session_scope() as session:
        job, created = record_job(
            session, task, args, workspace_id=workspace_id, idempotency_key=idempotency_key, run_at=run_at
        )
        item = Publishable(job.id, job.task, job.args)
    if created and publish_now and run_at is None:
        publish([item])
    return item.id


def job_row(job_id: uuid.UUID | str) -> Job:
    with session_scope() as session:
        job = session.execute(select(Job).where(Job.id == uuid.UUID(str(job_id)))).scalar_one()
        session.expunge(job)
        return job


def wait_for_job(job_id: uuid.UUID | str, timeout: float = 60.0, status: str | None = None) -> Job:
    """Wait until the job reaches a terminal status (or the given one) and return its ledger row."""

    def done() -> Job | None:
        with session_scope() as session:
            job = session.get(Job, uuid.UUID(str(job_id)))
            if job is None:
                return None
            session.expunge(job)
        if status is not None:
            return job if job.status.value == status else None
        return job if job.status in TERMINAL_JOB_STATUSES else None

    return wait_until(done, timeout, 0.05, f"job {job_id} to finish")


def run_job(task: str, timeout: float = 60.0, **args: Any) -> Job:
    """Enqueue a job through the outbox and return its finished ledger row (a worker must be running).

    A `workspace_id` argument also scopes the ledger row to that workspace, as the API does.
    """
    workspace_id = args.get("workspace_id")
    scoped = workspace_id if isinstance(workspace_id, int) else None
    return wait_for_job(enqueue(task, args, workspace_id=scoped), timeout)
