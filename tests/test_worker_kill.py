"""SIGKILL a worker process in the middle of a slow task: the task is delivered again and completes once.

Kept apart from modules that use the in-process worker, which would otherwise take the message itself.
"""

from __future__ import annotations

from models.core import JobStatus
from tests.support.jobs import enqueue, wait_for_job
from tests.support.services import WorkerProcess, wait_until


def test_a_killed_worker_process_mid_task_gets_the_task_again_and_it_completes_once(db_url) -> None:
    with WorkerProcess(queues=["default"], concurrency=1) as worker:
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
