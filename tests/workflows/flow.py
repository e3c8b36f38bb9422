"""Helpers for workflow tests that go through a real worker: enqueue execute, sweep, wait for the run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from models.workflows import WorkflowNodeRun, WorkflowRun, WorkflowRunStatus, WorkflowSideEffect
from tests.support.jobs import enqueue, wait_for_job
from tests.support.services import wait_until
from workers.db import session_scope
from workers.ledger import publish, sweep_stale


def execute(workspace_id: int, workflow_id: int, payload: dict[str, Any]) -> Any:
    """Enqueue workflows.execute through the ledger (as the API does) and return its finished ledger row."""
    job_id = enqueue(
        "workflows.execute",
        {"workspace_id": workspace_id, "workflow_id": workflow_id, "trigger_payload": payload},
        workspace_id=workspace_id,
    )
    return wait_for_job(job_id, timeout=60)


def sweep_once() -> int:
    """What beat's system.redeliver_stale does every minute: publish ledger rows that have come due."""
    with session_scope() as session:
        due = sweep_stale(session, grace=timedelta(minutes=5), max_running=timedelta(hours=1))
    return publish(due)


def wait_for_run(run_id: int, timeout: float = 60.0, sweep: bool = False) -> WorkflowRun:
    def finished() -> WorkflowRun | None:
        if sweep:
            sweep_once()
        with session_scope() as session:
            run = session.get_one(WorkflowRun, run_id)
            session.expunge(run)
        return run if run.status is not WorkflowRunStatus.RUNNING else None

    return wait_until(finished, timeout, 0.1, f"workflow run {run_id} to finish")


def node_runs(run_id: int) -> dict[str, WorkflowNodeRun]:
    with session_scope() as session:
        rows = session.execute(select(WorkflowNodeRun).where(WorkflowNodeRun.run_id == run_id)).scalars().all()
        session.expunge_all()
    return {row.node_id: row for row in rows}


def side_effects_per_node(run_id: int) -> dict[str, int]:
    with session_scope() as session:
        rows = session.execute(
            select(WorkflowNodeRun.node_id)
            .join(WorkflowSideEffect, WorkflowSideEffect.node_run_id == WorkflowNodeRun.id)
            .where(WorkflowSideEffect.run_id == run_id)
        ).all()
    counts: dict[str, int] = {}
    for (node_id,) in rows:
        counts[node_id] = counts.get(node_id, 0) + 1
    return counts
