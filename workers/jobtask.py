"""The base Task: validated arguments, a session per run, and the ledger row moved through its states."""

from __future__ import annotations

import logging
import random
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
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
from workers.errors import BadInput, JobFailed, Transient
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


def describe_error(exc: BaseException) -> str:
    """A failure reason fit for the ledger (read through the API) and the logs.

    A database error is told by its kind, SQLSTATE, the constraint, table or column involved and its primary
    message, never by its DETAIL, which quotes the row ("Key (email)=(kim@example.com) already exists"), nor by a
    data error's message, which quotes the value ('invalid input syntax for type integer: "…"').
    """
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    if not isinstance(orig, psycopg.Error):
        return f"{type(exc).__name__}: {str(exc)[:500]}"
    diag = orig.diag
    parts = [type(orig).__name__]
    if orig.sqlstate:
        parts.append(f"SQLSTATE {orig.sqlstate}")
    named = (("constraint", diag.constraint_name), ("table", diag.table_name), ("column", diag.column_name))
    for label, value in named:
        if value:
            parts.append(f"{label} {value}")
    if not isinstance(orig, psycopg.DataError):
        # Without a server diagnostic (a connection that failed client-side) the first line says what happened.
        message = diag.message_primary or (str(orig).splitlines() or [""])[0]
        if message:
            parts.append(message[:300])
    return "database error: " + ", ".join(parts)


def _quotes_data(exc: BaseException) -> bool:
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    return isinstance(orig, psycopg.Error)


@dataclass(frozen=True)
class Claim:
    """The ledger's count of runs when this one started: every run of the job, whichever copy of its message."""

    attempts: int
    lost_runs: int


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
        session: Session | None = state.get("session")
        if session is None:
            raise RuntimeError("JobTask.session is only available while a job runs")
        if state.get("body") is None:
            # The body's writes go in a savepoint, begun at its first use of the session: on failure they are undone
            # while the run's transaction (and with it the advisory lock) carries on to record the outcome. A body
            # that never touches the database pays nothing for it.
            state["body"] = session.begin_nested()
        return session

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
        state.update(job_id=job_id, workspace_id=workspace_id, children=[], claim=None, body=None)
        # The run holds an advisory lock on the job for as long as its transaction lives, and "running with the
        # lock free" means a lost run (to the claim below and to recovery). So the lock is let go only together
        # with the outcome: the body's writes sit in a savepoint (see `session`), undone on failure while the
        # transaction (and the lock) carries on to record the failure or the retry.
        session = new_session()
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
            state["claim"] = claim
            state["session"] = session
            log.info("job=%s task=%s event=started attempt=%d", job_id, self.name, claim.attempts)
            result = self.run(parsed)
            body = state.get("body")
            if body is not None and body.is_active:
                body.commit()
            if result is not None and not isinstance(result, dict):
                result = {"value": result}
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(status=JobStatus.SUCCEEDED, result=result, error=None, finished_at=func.clock_timestamp())
            )
            session.commit()
        except Retry:
            raise
        except (BadInput, SoftTimeLimitExceeded) as exc:
            reason = "soft time limit exceeded" if isinstance(exc, SoftTimeLimitExceeded) else str(exc)
            self._record_outcome(session, job_id, _failed(reason))
            log.warning("job=%s task=%s event=failed reason=%s", job_id, self.name, type(exc).__name__)
            raise
        except Exception as exc:
            if _is_transient(exc):
                return self._retry_or_fail(session, job_id, exc)
            reason = describe_error(exc)
            self._record_outcome(session, job_id, _failed(reason))
            # The frames say where; the reason says what, without the values a database error quotes.
            log.error(
                "job=%s task=%s event=failed error=%r\n%s",
                job_id,
                self.name,
                reason,
                "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
            )
            if _quotes_data(exc):
                raise JobFailed(reason) from None
            raise
        finally:
            state["session"] = None
            state["body"] = None
            session.close()
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

    def _claim(self, job_id: uuid.UUID, parsed: TaskArgs, workspace_id: int | None) -> Claim | None:
        """Move the ledger row to running in one statement (creating it for a send_task job).

        Returns the ledger's run counts, or None when the job must not run: it is finished or cancelled, the
        ledger names another task for this id, or it has lost too many runs already.
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
            published_at=func.clock_timestamp(),
        )
        # A row found already running was never finished: its previous run was lost (killed worker, time limit).
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={
                "status": JobStatus.RUNNING,
                "attempts": Job.attempts + 1,
                "lost_runs": Job.lost_runs + case((Job.status == JobStatus.RUNNING, 1), else_=0),
                "started_at": func.coalesce(Job.started_at, func.clock_timestamp()),
                # The sweeper's clock for a running row starts at its latest claim, not at its first start.
                "published_at": func.clock_timestamp(),
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
                        error=f"run lost {row.lost_runs} times (worker killed, or its outcome could not be "
                        "written while the database was unreachable); giving up",
                        finished_at=func.clock_timestamp(),
                    )
                )
                log.error("job=%s task=%s event=failed reason=lost-runs count=%d", job_id, self.name, row.lost_runs)
                return None
            return Claim(attempts=int(row.attempts), lost_runs=int(row.lost_runs))

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

    def _record_outcome(
        self, session: Session, job_id: uuid.UUID, values: dict[str, Any], *, retrying: bool = False
    ) -> None:
        """Write a failed or retrying outcome in the run's own transaction, after undoing the body's writes, so
        the advisory lock is let go only with it. When that transaction is unusable (its database connection is
        what failed, and the lock went with it), a short transaction of its own."""
        allowed = (
            Job.status == JobStatus.RUNNING
            if retrying
            else Job.status.notin_([JobStatus.SUCCEEDED, JobStatus.CANCELLED])
        )
        statement = update(Job).where(Job.id == job_id, allowed).values(**values)
        try:
            nested = session.get_nested_transaction()
            if nested is not None and nested.is_active:
                nested.rollback()
            session.execute(statement)
            session.commit()
            return
        except Exception:
            try:
                session.rollback()
            except Exception as rollback_exc:
                log.debug("job=%s event=rollback-failed error=%s", job_id, type(rollback_exc).__name__)
        try:
            _ledger(statement)
        except Exception as exc:
            # The database itself may be the trouble; a retry still goes through the broker, and a row left
            # running is found by the sweeper (or recovery) and counted as a lost run.
            log.error("job=%s task=%s event=ledger-unavailable error=%s", job_id, self.name, type(exc).__name__)

    def _retry_or_fail(self, session: Session, job_id: uuid.UUID, exc: Exception) -> Any:
        retries = self.request.retries
        claim: Claim | None = self._state().get("claim")
        if claim is not None:
            # The budget is the ledger's: Celery counts retries per chain of messages, and a re-published copy of
            # the message (sweeper, relay, recovery) would start that count again at zero.
            retries = max(retries, claim.attempts - 1 - claim.lost_runs)
        reason = describe_error(exc)
        if retries >= self.max_retries:
            self._record_outcome(session, job_id, _failed(f"gave up after {retries + 1} attempts: {reason}"))
            log.error("job=%s task=%s event=failed reason=retries-exhausted", job_id, self.name)
            raise exc
        countdown = backoff_seconds(retries, getattr(exc, "retry_after", None))
        # published_at is when the retry message comes due: the sweeper re-publishes the row only if that message
        # is lost (the grace period after it), never ahead of the backoff.
        self._record_outcome(
            session,
            job_id,
            {
                "status": JobStatus.RETRYING,
                "error": reason,
                "published_at": func.clock_timestamp() + timedelta(seconds=countdown),
            },
            retrying=True,
        )
        log.warning(
            "job=%s task=%s event=retrying retry=%d countdown=%.1f reason=%s",
            job_id,
            self.name,
            retries + 1,
            countdown,
            type(exc).__name__,
        )
        raise self.retry(exc=exc, countdown=countdown, max_retries=self.max_retries)


def _failed(reason: str) -> dict[str, Any]:
    return {"status": JobStatus.FAILED, "error": reason[:2000], "finished_at": func.clock_timestamp()}
