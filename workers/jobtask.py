"""The base Task: validated arguments, a session per run, and the ledger row moved through its states."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import kombu.exceptions
import psycopg
import redis.exceptions
from billiard.exceptions import SoftTimeLimitExceeded
from celery import Task
from celery.exceptions import Retry
from pydantic import ValidationError
from sqlalchemy import case, func, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.core import Job, JobStatus
from workers.contracts import TaskArgs
from workers.db import get_engine, new_session
from workers.errors import BadInput, Transient
from workers.ledger import (
    Publishable,
    UnknownTask,
    describe_validation_error,
    publish,
    record_job,
    record_jobs,
    utcnow,
    validate_args,
)
from workers.settings import get_settings

log = logging.getLogger("artisan.jobs")

# Errors worth retrying: the database or the broker went away, or a lock/serialisation conflict.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    Transient,
    sa_exc.OperationalError,
    sa_exc.DisconnectionError,
    sa_exc.InterfaceError,
    psycopg.OperationalError,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.LockNotAvailable,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
    ConnectionError,
    TimeoutError,
)

BACKOFF_BASE_SECONDS = 1.0
# Retries wait in the worker as a short countdown; keep it well below the broker's visibility timeout.
BACKOFF_CAP_SECONDS = 120.0


def backoff_seconds(retries: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter, bounded; a server's Retry-After is a floor."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2**retries))
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, BACKOFF_CAP_SECONDS))
    return delay


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.DBAPIError) and isinstance(exc.orig, TRANSIENT_ERRORS):
        return True
    return isinstance(exc, TRANSIENT_ERRORS)


def _lock_key(job_id: uuid.UUID) -> int:
    # pg advisory locks take a signed 64-bit key: the first 8 bytes of the uuid.
    return int.from_bytes(job_id.bytes[:8], "big", signed=True)


def _ledger(statement: Any) -> Any:
    """Run one statement on the ledger in its own short transaction (visible at once to the API)."""
    with get_engine().begin() as conn:
        return conn.execute(statement)


def mark_failed(job_id: uuid.UUID, reason: str) -> None:
    _ledger(
        update(Job)
        .where(Job.id == job_id, Job.status.notin_([JobStatus.SUCCEEDED, JobStatus.CANCELLED]))
        .values(status=JobStatus.FAILED, error=reason[:2000], finished_at=func.clock_timestamp())
    )


class JobTask(Task):
    """Base of every job. The task body receives its validated argument model and uses `self.session`."""

    abstract = True
    typing = False
    max_retries = 5
    _run_state: Any = None

    # --- what task bodies use -------------------------------------------------------------------
    @property
    def session(self) -> Session:
        state = self._state()
        if state.get("session") is None:
            raise RuntimeError("JobTask.session is only available while a job runs")
        return state["session"]

    @property
    def job_id(self) -> uuid.UUID:
        return self._state()["job_id"]

    def enqueue_child(
        self,
        task: str,
        kwargs: dict[str, Any],
        *,
        run_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> uuid.UUID:
        """Write a child job in this run's transaction; it is published after the run commits."""
        state = self._state()
        workspace_id = kwargs.get("workspace_id", state.get("workspace_id"))
        try:
            job, created = record_job(
                self.session,
                task,
                kwargs,
                workspace_id=workspace_id,
                idempotency_key=idempotency_key,
                run_at=run_at,
                parent_id=state["job_id"],
            )
        except ValidationError as exc:
            raise BadInput(describe_validation_error(task, exc)) from exc
        if created and (run_at is None or run_at <= utcnow()):
            state["children"].append(Publishable(id=job.id, task=job.task, args=job.args))
        return job.id

    def enqueue_children(self, task: str, items: Sequence[tuple[dict[str, Any], str | None]]) -> int:
        """Write many child jobs of one task in one INSERT (fan-out); published after the run commits.

        Items are (arguments, idempotency key); an item whose key exists already is skipped. Returns how many
        were created.
        """
        state = self._state()
        try:
            created = record_jobs(
                self.session, task, items, default_workspace_id=state.get("workspace_id"), parent_id=state["job_id"]
            )
        except ValidationError as exc:
            raise BadInput(describe_validation_error(task, exc)) from exc
        state["children"].extend(created)
        return len(created)

    def publish_after_commit(self, jobs: list[Publishable]) -> None:
        """Publish ledger rows once this run's transaction has committed (the outbox's rule)."""
        self._state()["children"].extend(jobs)

    # --- the run ----------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        # Thread-pool workers share one Task instance across threads: keep run state on the request.
        request = self.request
        state = getattr(request, "artisan_state", None)
        if state is None:
            state = {"session": None, "children": [], "job_id": None, "workspace_id": None}
            request.artisan_state = state
        return state

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        job_id = uuid.UUID(self.request.id) if self.request.id else uuid.uuid4()
        started = time.monotonic()
        if args:
            return self._fail_bad_input(job_id, kwargs, f"{self.name} takes keyword arguments only")
        try:
            parsed = validate_args(self.name, kwargs)
        except UnknownTask as exc:
            return self._fail_bad_input(job_id, kwargs, str(exc))
        except ValidationError as exc:
            return self._fail_bad_input(job_id, kwargs, describe_validation_error(self.name, exc))

        workspace_id = getattr(parsed, "workspace_id", None)
        state = self._state()
        state.update(job_id=job_id, workspace_id=workspace_id, children=[])
        session = new_session()
        try:
            try:
                locked = session.execute(select(func.pg_try_advisory_xact_lock(_lock_key(job_id)))).scalar_one()
                if not locked:
                    # The same job is running right now on another worker (a duplicate delivery): leave it be.
                    log.info("job=%s task=%s event=skipped reason=running-elsewhere", job_id, self.name)
                    session.rollback()
                    return None
                claim = self._claim(job_id, parsed, workspace_id)
                if claim is None:
                    session.rollback()
                    return None
                state["session"] = session
                log.info("job=%s task=%s event=started attempt=%d", job_id, self.name, claim)
                result = self.run(parsed)
                if result is not None and not isinstance(result, dict):
                    result = {"value": result}
                session.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(status=JobStatus.SUCCEEDED, result=result, error=None, finished_at=func.clock_timestamp())
                )
                session.commit()
            finally:
                state["session"] = None
                session.close()
        except Retry:
            raise
        except (BadInput, SoftTimeLimitExceeded) as exc:
            reason = "soft time limit exceeded" if isinstance(exc, SoftTimeLimitExceeded) else str(exc)
            self._safe_mark_failed(job_id, reason)
            log.warning("job=%s task=%s event=failed reason=%s", job_id, self.name, type(exc).__name__)
            raise
        except Exception as exc:
            if _is_transient(exc):
                return self._retry_or_fail(job_id, exc)
            self._safe_mark_failed(job_id, f"{type(exc).__name__}: {str(exc)[:500]}")
            log.exception("job=%s task=%s event=failed reason=%s", job_id, self.name, type(exc).__name__)
            raise
        children = state["children"]
        state["children"] = []
        publish(children)
        log.info(
            "job=%s task=%s event=succeeded ms=%.1f children=%d",
            job_id,
            self.name,
            (time.monotonic() - started) * 1000,
            len(children),
        )
        return result

    def _claim(self, job_id: uuid.UUID, parsed: TaskArgs, workspace_id: int | None) -> int | None:
        """Move the ledger row to running in one statement (creating it for a send_task job).

        Returns the attempt number, or None when the job must not run: it is finished or cancelled, the ledger
        names another task for this id, or it has lost too many runs already.
        """
        args = parsed.model_dump(mode="json", exclude_unset=True)
        stmt = insert(Job).values(
            id=job_id,
            task=self.name,
            args=args,
            workspace_id=workspace_id,
            status=JobStatus.RUNNING,
            attempts=1,
            started_at=func.clock_timestamp(),
        )
        # A row found already running was never finished: its previous run was lost (killed worker, time limit).
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={
                "status": JobStatus.RUNNING,
                "attempts": Job.attempts + 1,
                "lost_runs": Job.lost_runs + case((Job.status == JobStatus.RUNNING, 1), else_=0),
                "started_at": func.coalesce(Job.started_at, func.clock_timestamp()),
                "published_at": None,
            },
            where=(Job.status.in_([JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.RUNNING]))
            & (Job.task == stmt.excluded.task),
        )
        with get_engine().begin() as conn:
            # The claim need not survive a database crash (the job would simply run again), so skip the WAL flush.
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            row = conn.execute(stmt.returning(Job.attempts, Job.lost_runs)).one_or_none()
            if row is None:
                log.info("job=%s task=%s event=skipped reason=finished-or-cancelled", job_id, self.name)
                return None
            if row.lost_runs >= get_settings().max_lost_runs:
                conn.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(
                        status=JobStatus.FAILED,
                        error=f"run lost {row.lost_runs} times (worker killed or hard time limit); giving up",
                        finished_at=func.clock_timestamp(),
                    )
                )
                log.error("job=%s task=%s event=failed reason=lost-runs count=%d", job_id, self.name, row.lost_runs)
                return None
            return int(row.attempts)

    def _fail_bad_input(self, job_id: uuid.UUID, kwargs: dict[str, Any], reason: str) -> None:
        """Bad arguments: the job fails once, with the reason in the ledger, and the worker goes on."""
        workspace_id = kwargs.get("workspace_id") if isinstance(kwargs.get("workspace_id"), int) else None
        try:
            with get_engine().begin() as conn:
                conn.execute(
                    insert(Job)
                    .values(id=job_id, task=self.name, args={}, workspace_id=None, status=JobStatus.QUEUED)
                    .on_conflict_do_nothing(index_elements=["id"])
                )
            mark_failed(job_id, reason)
        except Exception as exc:
            log.error("job=%s task=%s event=ledger-unavailable error=%s", job_id, self.name, type(exc).__name__)
        log.warning("job=%s task=%s event=rejected workspace=%s reason=bad-arguments", job_id, self.name, workspace_id)
        return None

    def _safe_mark_failed(self, job_id: uuid.UUID, reason: str) -> None:
        try:
            mark_failed(job_id, reason)
        except Exception as exc:
            log.error("job=%s task=%s event=ledger-unavailable error=%s", job_id, self.name, type(exc).__name__)

    def _retry_or_fail(self, job_id: uuid.UUID, exc: Exception) -> Any:
        retries = self.request.retries
        reason = f"{type(exc).__name__}: {str(exc)[:300]}"
        if retries >= self.max_retries:
            self._safe_mark_failed(job_id, f"gave up after {retries + 1} attempts: {reason}")
            log.error("job=%s task=%s event=failed reason=retries-exhausted", job_id, self.name)
            raise exc
        countdown = backoff_seconds(retries, getattr(exc, "retry_after", None))
        try:
            _ledger(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
                .values(status=JobStatus.RETRYING, error=reason)
            )
        except Exception as ledger_exc:
            # The database itself may be the transient trouble; the retry still goes through the broker.
            log.warning("job=%s event=ledger-unavailable error=%s", job_id, type(ledger_exc).__name__)
        log.warning(
            "job=%s task=%s event=retrying retry=%d countdown=%.1f reason=%s",
            job_id,
            self.name,
            retries + 1,
            countdown,
            type(exc).__name__,
        )
        raise self.retry(exc=exc, countdown=countdown, max_retries=self.max_retries)
