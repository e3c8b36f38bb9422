"""Orphaned runs: `running` in the ledger with nobody holding the job's advisory lock are handed back; live runs
(their lock held) and young claims are left alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select, text

from models.core import Job, JobStatus
from tasks.operations.recovery import recover_orphaned_runs
from workers.db import get_engine, session_scope
from workers.jobtask import _lock_key


def _running(started_ago: timedelta) -> uuid.UUID:
    job_id = uuid.uuid4()
    with session_scope() as session:
        session.execute(
            insert(Job).values(
                id=job_id,
                task="system.ping",
                args={"message": "orphan"},
                status=JobStatus.RUNNING,
                attempts=1,
                started_at=datetime.now(UTC) - started_ago,
            )
        )
    return job_id


def test_only_runs_nobody_holds_are_handed_back_once(db_url: str) -> None:
    orphan = _running(timedelta(minutes=5))
    alive = _running(timedelta(minutes=5))
    young = _running(timedelta(seconds=0))
    with get_engine().connect() as holder:
        # A live run holds its job's lock for as long as it runs (the job base takes it in the run's transaction).
        holder.execute(select(func.pg_advisory_lock(_lock_key(alive))))
        try:
            with session_scope() as session:
                recovered = recover_orphaned_runs(session, min_age_seconds=10)
            with session_scope() as session:
                again = recover_orphaned_runs(session, min_age_seconds=10)
        finally:
            holder.execute(select(func.pg_advisory_unlock(_lock_key(alive))))
            holder.commit()

    ours = {orphan, alive, young}
    assert [r.id for r in recovered if r.id in ours] == [orphan]
    assert [r for r in again if r.id in ours] == []
    with session_scope() as session:
        rows = {r.id: r for r in session.execute(select(Job).where(Job.id.in_(ours))).scalars()}
        assert rows[orphan].status == JobStatus.QUEUED and rows[orphan].lost_runs == 1
        assert rows[orphan].published_at is not None
        assert rows[alive].status == JobStatus.RUNNING and rows[alive].lost_runs == 0
        assert rows[young].status == JobStatus.RUNNING


def test_the_sql_lock_key_is_the_job_base_key(db_url: str) -> None:
    for _ in range(50):
        job_id = uuid.uuid4()
        with session_scope() as session:
            key = session.execute(
                text("SELECT ('x' || substr(replace(CAST(:id AS uuid)::text, '-', ''), 1, 16))::bit(64)::bigint"),
                {"id": str(job_id)},
            ).scalar_one()
        assert key == _lock_key(job_id)
