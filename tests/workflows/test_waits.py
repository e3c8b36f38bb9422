"""Wait nodes under a frozen clock: the resume is a ledger row with run_at, not a Celery ETA."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from freezegun import freeze_time
from sqlalchemy import select

from models.core import Job, JobStatus
from models.workflows import NodeRunStatus, WorkflowNodeRun, WorkflowRun, WorkflowRunStatus, WorkflowSideEffect
from tasks.workflows import engine
from tests.workflows.driver import Driver
from tests.workflows.maps import edge, email, node
from workers.db import session_scope

WAIT_MAP = {
    "nodes": [node("start", "trigger"), node("pause", "wait", hours=1, minutes=30), email("follow_up")],
    "edges": [edge("start", "pause"), edge("pause", "follow_up")],
}
PAYLOAD = {"lead": {"email": "grace@example.com", "name": "Grace"}}


def _node(run_id: int, node_id: str) -> WorkflowNodeRun:
    with session_scope() as session:
        row = session.execute(
            select(WorkflowNodeRun).where(WorkflowNodeRun.run_id == run_id, WorkflowNodeRun.node_id == node_id)
        ).scalar_one()
        session.expunge(row)
    return row


def _frozen_start() -> datetime:
    # Ledger rows get run_at from PostgreSQL's clock, which freezegun does not move: start the frozen clock a
    # minute ahead so rows stamped by the database are already due at the frozen "now".
    return (datetime.now(UTC) + timedelta(minutes=1)).replace(microsecond=0)


def test_a_wait_resumes_only_when_its_time_has_come(workspace_id: int, save_map: Callable[..., int]) -> None:
    start = _frozen_start()
    resume_at = start + timedelta(hours=1, minutes=30)
    driver = Driver(workspace_id)
    with freeze_time(start) as clock:
        run_id = driver.execute(save_map(WAIT_MAP), PAYLOAD)
        assert driver.drain(now=start) == 2  # the trigger, then the wait's first visit

        pause = _node(run_id, "pause")
        assert pause.status is NodeRunStatus.WAITING
        assert pause.resume_at == resume_at
        assert pause.input == {"seconds": 5400.0}
        with session_scope() as session:
            resume_job = session.execute(
                select(Job).where(Job.workspace_id == workspace_id, Job.idempotency_key.like("%:pause:resume"))
            ).scalar_one()
        # The resume is a ledger row due at the resume time: the sweeper publishes it then (no broker ETA).
        assert resume_job.run_at == resume_at
        assert resume_job.status is JobStatus.QUEUED

        clock.move_to(start + timedelta(minutes=45))
        assert driver.drain() == 0
        # A duplicate delivery before the time changes nothing and schedules nothing new.
        with session_scope() as session:
            early = engine.run_node(
                session,
                workspace_id=workspace_id,
                run_id=run_id,
                node_id="pause",
                enqueue=driver.enqueue_for(session),
            )
        assert early["status"] == "waiting"
        assert driver.calls["pause:resume"] == 1
        assert _node(run_id, "follow_up").status is NodeRunStatus.PENDING

        clock.move_to(resume_at + timedelta(seconds=1))
        assert driver.drain() == 2  # the resumed wait, then the email
        pause = _node(run_id, "pause")
        assert pause.status is NodeRunStatus.SUCCEEDED
        assert pause.output == {
            "resume_at": resume_at.isoformat(),
            "resumed_at": (resume_at + timedelta(seconds=1)).isoformat(),
        }
        assert pause.attempts == 1  # the resume visit is not a new attempt
        assert _node(run_id, "follow_up").status is NodeRunStatus.SUCCEEDED
        with session_scope() as session:
            run = session.get_one(WorkflowRun, run_id)
            assert run.status is WorkflowRunStatus.SUCCEEDED
            assert run.finished_at is not None and run.finished_at >= resume_at
            effects = session.execute(select(WorkflowSideEffect).where(WorkflowSideEffect.run_id == run_id)).all()
            assert len(effects) == 1


def test_parallel_waits_of_different_lengths_meet_at_a_join(workspace_id: int, save_map: Callable[..., int]) -> None:
    definition = {
        "nodes": [
            node("start", "trigger"),
            node("fan", "branch"),
            node("short", "wait", minutes=10),
            node("long", "wait", days=2),
            node("j", "join"),
            email("recap"),
        ],
        "edges": [
            edge("start", "fan"),
            edge("fan", "short"),
            edge("fan", "long"),
            edge("short", "j"),
            edge("long", "j"),
            edge("j", "recap"),
        ],
    }
    start = _frozen_start()
    driver = Driver(workspace_id)
    with freeze_time(start) as clock:
        run_id = driver.execute(save_map(definition), PAYLOAD)
        driver.drain()
        clock.move_to(start + timedelta(hours=1))
        assert driver.drain() == 1  # only the short wait resumes
        assert _node(run_id, "j").arrivals == 1
        assert _node(run_id, "recap").status is NodeRunStatus.PENDING
        clock.move_to(start + timedelta(days=2, seconds=1))
        assert driver.drain() == 3  # the long wait, the join, the recap
        assert _node(run_id, "recap").status is NodeRunStatus.SUCCEEDED
        assert driver.calls["j:run"] == 1
