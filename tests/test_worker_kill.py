"""A worker process killed in the middle of a task: by SIGKILL the task is delivered again and completes once; by
its hard time limit the job fails once with the reason, and is not run again.

Kept apart from modules that use the in-process worker, which would otherwise take the message itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from models.core import JobStatus
from tests.support.jobs import enqueue, job_row, wait_for_job
from tests.support.services import WorkerProcess, wait_until


@pytest.fixture(scope="module")
def worker(db_url: str) -> Iterator[WorkerProcess]:
    with WorkerProcess(queues=["default"], concurrency=1, app="tests.support.probe_app") as process:
        yield process


def test_a_killed_worker_process_mid_task_gets_the_task_again_and_it_completes_once(worker: WorkerProcess) -> None:
    job_id = enqueue("system.ping", {"message": "survivor", "sleep_seconds": 4})

    def running() -> bool:
        return wait_for_job(job_id, timeout=60, status="running") is not None

    wait_until(running, 60, 0.1, "the slow job to start")
    killed = worker.kill_pool_process()
    job = wait_for_job(job_id, timeout=90)
    assert killed not in worker.pool_pids()
    assert job.status == JobStatus.SUCCEEDED
    assert job.attempts == 2
    assert job.lost_runs == 1
    assert job.result == {"message": "survivor", "job_id": str(job_id)}


def test_a_hard_time_limit_fails_the_job_once_with_the_reason(worker: WorkerProcess) -> None:
    from workers.app import app

    job_id = str(uuid.uuid4())
    # The hard limit kills the pool process: the body never writes its outcome, the worker's parent does.
    app.send_task("tests.stubborn", kwargs={"seconds": 60}, task_id=job_id, soft_time_limit=1, time_limit=3)
    job = wait_for_job(job_id, timeout=60)
    assert job.status == JobStatus.FAILED and "hard time limit" in (job.error or "")
    assert job.attempts == 1 and job.finished_at is not None
    # The worker goes on, and the failed job is not run again (a redelivered copy is skipped by the claim).
    assert wait_for_job(enqueue("system.ping", {"message": "after"}), timeout=60).status == JobStatus.SUCCEEDED
    assert job_row(job_id).attempts == 1
