"""The job base's rules through a real worker: retries with backoff for transient trouble, bounded; bad input
fails once; the run's session commits on success and rolls back on failure."""

from __future__ import annotations

import uuid

import redis
from pydantic import Field
from sqlalchemy import insert, select

from models.core import JobStatus, Workspace
from tests.support.jobs import enqueue, wait_for_job
from workers.app import app
from workers.contracts import TaskArgs, task_args
from workers.db import session_scope
from workers.errors import BadInput, Transient
from workers.jobtask import JobTask, backoff_seconds
from workers.settings import get_settings


@task_args("tests.flaky")
class FlakyArgs(TaskArgs):
    api_visible = False
    failures: int = Field(ge=0)
    workspace_name: str


@app.task(name="tests.flaky", base=JobTask, bind=True, max_retries=2)
def flaky(self: JobTask, args: FlakyArgs) -> dict[str, int]:
    # The workspace row is written first, so a failed attempt proves its writes were rolled back.
    self.session.execute(insert(Workspace).values(name=f"{args.workspace_name}-{self.request.retries}"))
    counter = redis.Redis.from_url(get_settings().redis_url).incr(f"tests:flaky:{self.job_id}")
    if counter <= args.failures:
        raise Transient(f"dependency unavailable (attempt {counter})", retry_after=0.2)
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
    from models.core import Job

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
