"""The path end to end: send_task by name → a real worker → the ledger row, and the job base's rules."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from models.core import Job, JobStatus
from tests.support.jobs import enqueue, wait_for_job


def test_ping_sent_by_name_ends_succeeded_in_the_ledger(celery_worker) -> None:
    from workers.app import app

    task_id = str(uuid.uuid4())
    app.send_task("system.ping", kwargs={"message": "hello"}, task_id=task_id)
    job = wait_for_job(task_id)
    assert job.status == JobStatus.SUCCEEDED
    assert job.task == "system.ping"
    assert job.result == {"message": "hello", "job_id": task_id}
    assert job.attempts == 1
    assert job.started_at is not None and job.finished_at is not None and job.finished_at >= job.started_at


def test_bad_arguments_fail_once_with_the_reason_and_the_worker_goes_on(celery_worker) -> None:
    from workers.app import app

    bad = str(uuid.uuid4())
    app.send_task("system.ping", kwargs={"message": "x", "surprise": 1}, task_id=bad)
    job = wait_for_job(bad)
    assert job.status == JobStatus.FAILED
    assert "surprise" in (job.error or "") and "system.ping" in (job.error or "")
    assert job.attempts == 0

    mistyped = str(uuid.uuid4())
    app.send_task("system.ping", kwargs={"sleep_seconds": "soon"}, task_id=mistyped)
    assert "sleep_seconds" in (wait_for_job(mistyped).error or "")

    nul = str(uuid.uuid4())
    app.send_task("system.ping", kwargs={"message": "secret\x00text"}, task_id=nul)
    refused = wait_for_job(nul)
    assert refused.status == JobStatus.FAILED
    assert "message: NUL characters" in (refused.error or "") and "secret" not in (refused.error or "")

    good = enqueue("system.ping", {"message": "still here"})
    assert wait_for_job(good).status == JobStatus.SUCCEEDED


def test_a_job_already_succeeded_or_cancelled_is_not_run_again(celery_worker, session) -> None:
    from workers.app import app

    done = enqueue("system.ping", {"message": "once"})
    first = wait_for_job(done)
    app.send_task("system.ping", kwargs={"message": "once"}, task_id=str(done))
    cancelled = enqueue("system.ping", {}, publish_now=False)
    session.execute(Job.__table__.update().where(Job.id == cancelled).values(status=JobStatus.CANCELLED))
    session.commit()
    app.send_task("system.ping", kwargs={}, task_id=str(cancelled))
    marker = enqueue("system.ping", {"message": "after"})
    wait_for_job(marker)
    again = wait_for_job(done)
    assert again.attempts == first.attempts == 1 and again.finished_at == first.finished_at
    assert wait_for_job(cancelled).status == JobStatus.CANCELLED


def test_the_ledger_holds_one_row_per_job(celery_worker, session) -> None:
    ids = [enqueue("system.ping", {"message": f"n{i}"}) for i in range(20)]
    for job_id in ids:
        assert wait_for_job(job_id).status == JobStatus.SUCCEEDED
    rows = session.execute(select(Job.id).where(Job.id.in_(ids))).scalars().all()
    assert sorted(rows) == sorted(ids)
