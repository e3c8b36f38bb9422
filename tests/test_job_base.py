"""The job base's rules through a real worker: retries with backoff for transient trouble, bounded; bad input
fails once; the run's session commits on success and rolls back on failure."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
import redis
from freezegun import freeze_time
from pydantic import Field
from sqlalchemy import func, insert, select, text, update

from models.core import Job, JobStatus, Workspace
from tests.support.jobs import enqueue, job_row, wait_for_job
from tests.support.services import wait_until
from workers.app import app
from workers.contracts import TaskArgs, task_args
from workers.db import get_engine, session_scope
from workers.errors import BadInput, Transient
from workers.jobtask import JobTask, _lock_key, backoff_seconds
from workers.ledger import Publishable, publish, sweep_stale
from workers.settings import get_settings


@task_args("tests.flaky")
class FlakyArgs(TaskArgs):
    api_visible = False
    failures: int = Field(ge=0)
    workspace_name: str
    retry_after: float = Field(default=0.2, ge=0)


@app.task(name="tests.flaky", base=JobTask, bind=True, max_retries=2)
def flaky(self: JobTask, args: FlakyArgs) -> dict[str, int]:
    # The workspace row is written first, so a failed attempt proves its writes were rolled back.
    self.session.execute(insert(Workspace).values(name=f"{args.workspace_name}-{self.request.retries}"))
    counter = redis.Redis.from_url(get_settings().redis_url).incr(f"tests:flaky:{self.job_id}")
    if counter <= args.failures:
        raise Transient(f"dependency unavailable (attempt {counter})", retry_after=args.retry_after)
    return {"attempt": counter}


@task_args("tests.refuses")
class RefusesArgs(TaskArgs):
    api_visible = False
    workspace_name: str


@app.task(name="tests.refuses", base=JobTask, bind=True, max_retries=2)
def refuses(self: JobTask, args: RefusesArgs) -> None:
    self.session.execute(insert(Workspace).values(name=args.workspace_name))
    raise BadInput("the transcript is empty")


def _workspaces_named(prefix: str) -> list[str]:
    with session_scope() as s:
        return list(s.execute(select(Workspace.name).where(Workspace.name.like(f"{prefix}%"))).scalars())


def test_backoff_grows_exponentially_with_jitter_and_is_bounded() -> None:
    for retries in range(12):
        delay = backoff_seconds(retries)
        ceiling = min(120.0, 2.0**retries)
        assert ceiling / 2 <= delay <= ceiling
    assert backoff_seconds(0, retry_after=30) >= 30
    assert backoff_seconds(0, retry_after=10_000) <= 120


def test_transient_errors_are_retried_and_only_the_successful_attempt_commits(celery_worker) -> None:
    name = f"flaky-{uuid.uuid4().hex[:8]}"
    job = wait_for_job(enqueue("tests.flaky", {"failures": 2, "workspace_name": name}), timeout=90)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempts == 3
    assert job.result == {"attempt": 3}
    assert _workspaces_named(name) == [f"{name}-2"]


def test_retries_are_bounded_and_the_job_fails_with_the_reason(celery_worker) -> None:
    name = f"flaky-{uuid.uuid4().hex[:8]}"
    job = wait_for_job(enqueue("tests.flaky", {"failures": 10, "workspace_name": name}), timeout=90)
    assert job.status == JobStatus.FAILED
    assert job.attempts == 3
    assert "gave up after 3 attempts" in (job.error or "") and "dependency unavailable" in (job.error or "")
    assert _workspaces_named(name) == []


def test_bad_input_fails_once_without_retry_and_changes_nothing(celery_worker) -> None:
    name = f"refused-{uuid.uuid4().hex[:8]}"
    job = wait_for_job(enqueue("tests.refuses", {"workspace_name": name}))
    assert job.status == JobStatus.FAILED
    assert job.attempts == 1
    assert job.error == "the transcript is empty"
    assert _workspaces_named(name) == []


@task_args("tests.fan_out")
class FanOutArgs(TaskArgs):
    api_visible = False
    batch: str
    count: int = Field(ge=0, le=100)


@app.task(name="tests.fan_out", base=JobTask, bind=True, max_retries=2)
def fan_out(self: JobTask, args: FanOutArgs) -> dict[str, int]:
    items = [({"message": f"{args.batch}-{i}"}, f"tests.fan_out:{args.batch}:{i}") for i in range(args.count)]
    return {"created": self.enqueue_children("system.ping", items)}


def test_fan_out_writes_children_in_one_insert_and_a_repeat_creates_none(celery_worker) -> None:
    batch = uuid.uuid4().hex[:8]
    first = wait_for_job(enqueue("tests.fan_out", {"batch": batch, "count": 5}))
    second = wait_for_job(enqueue("tests.fan_out", {"batch": batch, "count": 5}))
    assert first.result == {"created": 5} and second.result == {"created": 0}
    with session_scope() as s:
        children = s.execute(select(Job).where(Job.parent_id == first.id)).scalars().all()
        ids = [c.id for c in children]
    assert len(ids) == 5
    for child in ids:
        assert wait_for_job(child).status == JobStatus.SUCCEEDED


# --- the claim, the lock and the outcome ----------------------------------------------------------------------
@task_args("tests.fails_on_signal")
class FailsOnSignalArgs(TaskArgs):
    api_visible = False
    kind: Literal["bad_input", "transient"]


@app.task(name="tests.fails_on_signal", base=JobTask, bind=True, max_retries=1)
def fails_on_signal(self: JobTask, args: FailsOnSignalArgs) -> dict[str, int]:
    client = redis.Redis.from_url(get_settings().redis_url)
    attempt = client.incr(f"tests:signal-attempt:{self.job_id}")
    if attempt > 1:
        return {"attempt": attempt}
    client.set(f"tests:signal-started:{self.job_id}", 1)
    wait_until(lambda: client.get(f"tests:signal-go:{self.job_id}"), 60, 0.02, "the test's signal")
    if args.kind == "transient":
        raise Transient("dependency unavailable", retry_after=0.2)
    raise BadInput("refused")


def _advisory_lock_is_free(job_id: uuid.UUID) -> bool:
    with get_engine().connect() as conn:
        free = bool(conn.execute(select(func.pg_try_advisory_lock(_lock_key(job_id)))).scalar_one())
        if free:
            conn.execute(select(func.pg_advisory_unlock(_lock_key(job_id))))
        return free


def _outcome_write_waits_on_the_row(job_id: uuid.UUID) -> bool:
    with get_engine().connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' AND query ILIKE 'UPDATE jobs%'"
                )
            ).scalar_one()
        )


@pytest.mark.parametrize("kind", ["bad_input", "transient"])
def test_a_failed_or_retrying_outcome_is_written_while_the_run_still_holds_its_lock(celery_worker, kind: str) -> None:
    # Recovery and duplicate deliveries treat "running, lock free" as a lost run: the lock must not be let go
    # before the outcome (failed, retrying) is in the ledger, or a second copy could run in between.
    client = redis.Redis.from_url(get_settings().redis_url)
    job_id = enqueue("tests.fails_on_signal", {"kind": kind})
    wait_until(lambda: client.get(f"tests:signal-started:{job_id}"), 60, 0.02, "the run to start")
    with get_engine().connect() as holder:
        # Hold the ledger row so the outcome write has to wait, then let the run fail.
        holder.execute(select(Job.id).where(Job.id == job_id).with_for_update())
        client.set(f"tests:signal-go:{job_id}", 1)
        wait_until(lambda: _outcome_write_waits_on_the_row(job_id), 60, 0.02, "the outcome write")
        assert not _advisory_lock_is_free(job_id)
        holder.rollback()
    job = wait_for_job(job_id)
    if kind == "transient":
        assert job.status == JobStatus.SUCCEEDED and job.attempts == 2 and job.lost_runs == 0
    else:
        assert job.status == JobStatus.FAILED and job.error == "refused" and job.attempts == 1


def test_a_retrying_job_waits_for_its_retry_and_the_sweeper_takes_it_only_if_that_is_lost(celery_worker) -> None:
    name = f"flaky-{uuid.uuid4().hex[:8]}"
    job_id = enqueue("tests.flaky", {"failures": 1, "workspace_name": name, "retry_after": 6}, publish_now=False)
    # Enqueued an hour ago and scheduled: a retrying row matched both of the sweeper's "never published" rules.
    with session_scope() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(enqueued_at=func.now() - timedelta(hours=1), run_at=func.now() - timedelta(minutes=30))
        )
    publish([Publishable(job_id, "tests.flaky", job_row(job_id).args)])
    wait_for_job(job_id, status="retrying")
    broker = redis.Redis.from_url(get_settings().redis_url)

    def swept(at: datetime) -> bool:
        # The worker's timers keep real time: a frozen monotonic clock could fire the pending retry early.
        with freeze_time(at, ignore=["celery", "kombu", "billiard"]), session_scope() as s:
            ids = {p.id for p in sweep_stale(s, grace=timedelta(seconds=300), max_running=timedelta(hours=1))}
            s.rollback()
        return job_id in ids

    with get_engine().connect() as holder:
        # Holding the job's lock, the retry message finds the job "running elsewhere" and is dropped when it comes
        # due: exactly a lost retry.
        holder.execute(select(func.pg_advisory_lock(_lock_key(job_id))))
        # Re-published now, a copy would run before the backoff and with Celery's retry count back at zero.
        assert not swept(datetime.now(UTC))
        wait_until(lambda: not _unacked_copies(broker, job_id), 60, 0.1, "the retry message to be dropped")
        assert job_row(job_id).status == JobStatus.RETRYING
        assert not swept(datetime.now(UTC))
        # Its retry lost, the row is taken once that retry is overdue by the grace period.
        assert swept(datetime.now(UTC) + timedelta(seconds=300 + 60))
        holder.execute(select(func.pg_advisory_unlock(_lock_key(job_id))))
        holder.commit()
    publish([Publishable(job_id, "tests.flaky", job_row(job_id).args)])
    job = wait_for_job(job_id)
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2


def _unacked_copies(broker: redis.Redis, job_id: uuid.UUID) -> int:
    """Messages of this job that a worker holds unacknowledged (kombu keeps them in the `unacked` hash).

    Only this job's: other modules' killed workers may leave messages of their own in the same Redis db.
    """
    return sum(1 for raw in broker.hvals("unacked") if str(job_id).encode() in raw)


def test_the_retry_budget_is_the_ledgers_so_another_copy_of_the_message_cannot_extend_it(celery_worker) -> None:
    name = f"flaky-{uuid.uuid4().hex[:8]}"
    job_id = enqueue("tests.flaky", {"failures": 100, "workspace_name": name, "retry_after": 3})
    for attempts in (1, 2):
        wait_until(
            lambda n=attempts: (
                (row := job_row(job_id)).attempts >= n and row.status in (JobStatus.RETRYING, JobStatus.FAILED)
            ),
            60,
            0.05,
            f"attempt {attempts} to fail",
        )
        # A second copy of the message (a re-publish) arrives with Celery's own retry count at zero.
        app.send_task("tests.flaky", kwargs=job_row(job_id).args, task_id=str(job_id))
    job = wait_for_job(job_id, timeout=30)
    assert job.status == JobStatus.FAILED and job.attempts == 3
    assert "gave up after 3 attempts" in (job.error or "")
    # The retry messages still counting down find the job failed and step aside; none is left for later modules.
    broker = redis.Redis.from_url(get_settings().redis_url)
    wait_until(lambda: not _unacked_copies(broker, job_id), 60, 0.1, "the pending retries to be consumed")
    assert job_row(job_id).attempts == 3


@task_args("tests.duplicate_workspace")
class DuplicateWorkspaceArgs(TaskArgs):
    api_visible = False
    workspace_name: str


@app.task(name="tests.duplicate_workspace", base=JobTask, bind=True, max_retries=1)
def duplicate_workspace(self: JobTask, args: DuplicateWorkspaceArgs) -> dict[str, int]:
    self.session.execute(insert(Workspace).values(name=args.workspace_name))
    return {}


def test_a_database_error_is_told_by_kind_and_constraint_never_by_the_values_it_quotes(
    celery_worker, caplog: pytest.LogCaptureFixture
) -> None:
    # PostgreSQL's DETAIL quotes the row ("Key (name)=(kim-…@example.com) already exists"): personal data.
    name = f"kim-{uuid.uuid4().hex[:8]}@example.com"
    with session_scope() as s:
        s.execute(insert(Workspace).values(name=name))
    with caplog.at_level(logging.INFO):
        job = wait_for_job(enqueue("tests.duplicate_workspace", {"workspace_name": name}))
        wait_until(lambda: "event=failed" in caplog.text, 30, 0.05, "the failure to be logged")
    assert job.status == JobStatus.FAILED and job.attempts == 1
    assert "UniqueViolation" in (job.error or "") and "uq_workspaces_name" in (job.error or "")
    assert name not in (job.error or "")
    assert str(job.id) in caplog.text and name not in caplog.text


def test_a_second_delivery_while_the_job_runs_is_skipped(celery_worker, caplog: pytest.LogCaptureFixture) -> None:
    args = {"message": "one run", "sleep_seconds": 1.5}
    job_id = enqueue("system.ping", args)
    wait_for_job(job_id, status="running")
    with caplog.at_level(logging.INFO, logger="artisan.jobs"):
        app.send_task("system.ping", kwargs=args, task_id=str(job_id))
        job = wait_for_job(job_id)
        wait_until(lambda: f"job={job_id} task=system.ping event=skipped" in caplog.text, 30, 0.05, "the skip")
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1 and job.lost_runs == 0


def test_pruning_deletes_only_finished_jobs_past_the_retention(celery_worker) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from models.core import Job

    old_done = enqueue("system.ping", {"message": "old"}, publish_now=False)
    old_queued = enqueue("system.ping", {"message": "old but waiting"}, publish_now=False)
    recent_done = enqueue("system.ping", {"message": "recent"}, publish_now=False)
    long_ago = datetime.now(UTC) - timedelta(days=45)
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == old_done).values(status=JobStatus.SUCCEEDED, finished_at=long_ago))
        s.execute(update(Job).where(Job.id == old_queued).values(enqueued_at=long_ago, run_at=long_ago))
        s.execute(
            update(Job)
            .where(Job.id == recent_done)
            .values(status=JobStatus.FAILED, finished_at=datetime.now(UTC) - timedelta(days=3))
        )
    pruned = wait_for_job(enqueue("system.prune_ledger", {"batch_size": 1}))
    assert pruned.status == JobStatus.SUCCEEDED
    assert pruned.result["deleted"] >= 1 and pruned.result["retention_days"] == 30
    with session_scope() as s:
        left = set(s.execute(select(Job.id).where(Job.id.in_([old_done, old_queued, recent_done]))).scalars())
    assert left == {old_queued, recent_done}
