"""The jobs ledger and its outbox: write the row first, publish after commit, re-publish what got lost."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.core import Job, JobStatus
from workers.contracts import TASK_ARGS, TaskArgs, load_task_args

log = logging.getLogger(__name__)


class UnknownTask(ValueError):
    def __init__(self, task: str) -> None:
        super().__init__(f"unknown task {task!r}")
        self.task = task


class IdempotencyConflict(ValueError):
    def __init__(self, job_id: uuid.UUID) -> None:
        super().__init__("idempotency_key already used with different arguments")
        self.job_id = job_id


@dataclass(frozen=True)
class Publishable:
    """What the outbox needs to publish a committed ledger row."""

    id: uuid.UUID
    task: str
    args: dict[str, Any]


def utcnow() -> datetime:
    return datetime.now(UTC)


_registry_loaded = False


def task_args_model(task: str) -> type[TaskArgs] | None:
    """The registered argument model of a task. The areas are scanned and imported once per process (a scan
    lists directories: far too slow for every job and every request); later registrations land in the same dict."""
    global _registry_loaded
    if not _registry_loaded:
        load_task_args()
        _registry_loaded = True
    return TASK_ARGS.get(task)


def validate_args(task: str, args: dict[str, Any]) -> TaskArgs:
    """Parse a task's arguments with its registered model; raises UnknownTask or pydantic's ValidationError."""
    model = task_args_model(task)
    if model is None:
        raise UnknownTask(task)
    return model.model_validate(args)


def args_digest(task: str, args: dict[str, Any]) -> str:
    canonical = json.dumps({"task": task, "args": args}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def describe_validation_error(task: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "args"
        parts.append(f"{field}: {err['msg']}")
    return f"invalid arguments for {task}: " + "; ".join(parts)


def record_job(
    session: Session,
    task: str,
    args: dict[str, Any],
    *,
    workspace_id: int | None = None,
    idempotency_key: str | None = None,
    run_at: datetime | None = None,
    parent_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
) -> tuple[Job, bool]:
    """Write a job to the ledger in the caller's transaction; returns (row, created).

    Arguments are validated first (nothing is written for bad ones). With an idempotency key, a second call
    with the same arguments returns the existing row, and with different arguments raises IdempotencyConflict.
    """
    parsed = validate_args(task, args)
    normalised = parsed.model_dump(mode="json", exclude_unset=True)
    digest = args_digest(task, normalised)
    values: dict[str, Any] = {
        "id": job_id or uuid.uuid4(),
        "workspace_id": workspace_id,
        "task": task,
        "args": normalised,
        "status": JobStatus.QUEUED,
        "idempotency_key": idempotency_key,
        "args_hash": digest,
        "parent_id": parent_id,
    }
    if run_at is not None:
        values["run_at"] = run_at
    stmt = insert(Job).values(**values)
    if idempotency_key is not None:
        stmt = stmt.on_conflict_do_nothing(
            index_elements=["workspace_id", "idempotency_key"],
            index_where=text("idempotency_key IS NOT NULL"),
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=["id"])
    inserted = session.execute(stmt.returning(Job.id)).scalar_one_or_none()
    if inserted is not None:
        return session.get_one(Job, inserted), True
    if idempotency_key is None:
        return session.get_one(Job, values["id"]), False
    existing = session.execute(
        select(Job).where(
            Job.workspace_id.is_(None) if workspace_id is None else Job.workspace_id == workspace_id,
            Job.idempotency_key == idempotency_key,
        )
    ).scalar_one()
    if existing.task != task or existing.args_hash != digest:
        raise IdempotencyConflict(existing.id)
    return existing, False


def record_jobs(
    session: Session,
    task: str,
    items: Sequence[tuple[dict[str, Any], str | None]],
    *,
    default_workspace_id: int | None = None,
    parent_id: uuid.UUID | None = None,
) -> list[Publishable]:
    """Write many jobs of one task in one multi-row INSERT (fan-out); returns the rows actually created.

    Each item is (arguments, idempotency key). A key already present skips its item without comparing arguments:
    a fan-out names each unit by its key, so a repeat is the same unit. Arguments are validated first; one bad
    item raises before anything is written.
    """
    rows = []
    for args, idempotency_key in items:
        normalised = validate_args(task, args).model_dump(mode="json", exclude_unset=True)
        workspace_id = normalised.get("workspace_id", default_workspace_id)
        rows.append(
            {
                "id": uuid.uuid4(),
                "workspace_id": workspace_id if isinstance(workspace_id, int) else default_workspace_id,
                "task": task,
                "args": normalised,
                "status": JobStatus.QUEUED,
                "idempotency_key": idempotency_key,
                "args_hash": args_digest(task, normalised),
                "parent_id": parent_id,
            }
        )
    if not rows:
        return []
    created = session.execute(
        insert(Job).values(rows).on_conflict_do_nothing().returning(Job.id, Job.task, Job.args)
    ).all()
    return [Publishable(id=r.id, task=r.task, args=r.args) for r in created]


def is_due(job: Job, now: datetime | None = None) -> bool:
    return job.run_at <= (now or utcnow())


def publish(jobs: Iterable[Publishable]) -> int:
    """Publish committed ledger rows to the broker with the ledger id as the Celery task id.

    A failure is logged and swallowed: the row is in the ledger, and the sweeper publishes it later.
    """
    from workers.app import app

    published = 0
    batch = list(jobs)
    if not batch:
        return 0
    try:
        with app.producer_or_acquire() as producer:
            for job in batch:
                app.send_task(job.task, kwargs=job.args, task_id=str(job.id), producer=producer)
                published += 1
    except Exception as exc:  # any broker error: the outbox keeps the job, the sweeper retries
        log.warning("publish failed, %d of %d jobs left to the sweeper: %s", len(batch) - published, len(batch), exc)
    return published


def sweep_stale(session: Session, *, grace: timedelta, max_running: timedelta, limit: int = 500) -> list[Publishable]:
    """Claim ledger rows to (re)publish: due and unpublished for `grace`, or running for longer than any run can.

    Rows are locked with SKIP LOCKED and stamped `published_at`, so two sweepers at once never take the same
    row. The caller commits, then publishes the returned rows.
    """
    now = utcnow()
    rows = session.execute(
        text(
            """
            WITH due AS (
                SELECT id FROM jobs
                WHERE status IN ('queued', 'retrying', 'running')
                  AND run_at <= :now
                  AND (
                    (status IN ('queued', 'retrying')
                     AND (published_at IS NULL AND run_at > enqueued_at  -- scheduled, never published
                          OR coalesce(published_at, enqueued_at) <= :grace_cutoff))
                    OR (status = 'running' AND coalesce(published_at, started_at) <= :running_cutoff)
                  )
                ORDER BY run_at
                LIMIT :limit
                FOR UPDATE SKIP LOCKED
            )
            UPDATE jobs SET published_at = :now
            FROM due WHERE jobs.id = due.id
            RETURNING jobs.id, jobs.task, jobs.args
            """
        ),
        {
            "now": now,
            "grace_cutoff": now - grace,
            "running_cutoff": now - max_running,
            "limit": limit,
        },
    ).all()
    return [Publishable(id=r.id, task=r.task, args=r.args) for r in rows]


def prune_finished(session: Session, *, retention: timedelta, batch_size: int, max_batches: int) -> int:
    """Delete finished jobs older than `retention` in batches (each a short statement); returns rows deleted.

    Only succeeded, failed and cancelled rows go: queued, running and retrying rows are never touched. A row's
    idempotency key goes with it, so a key is remembered for the retention period.
    """
    cutoff = utcnow() - retention
    deleted = 0
    for _ in range(max_batches):
        batch = session.execute(
            text(
                """
                DELETE FROM jobs WHERE id IN (
                    SELECT id FROM jobs
                    WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < :cutoff
                    LIMIT :batch_size
                    FOR UPDATE SKIP LOCKED
                )
                """
            ),
            {"cutoff": cutoff, "batch_size": batch_size},
        ).rowcount
        deleted += batch
        if batch < batch_size:
            break
    return deleted
