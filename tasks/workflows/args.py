"""Argument models of the workflow tasks."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from workers.contracts import TaskArgs, task_args


@task_args("workflows.execute")
class ExecuteWorkflowArgs(TaskArgs):
    """Start a run of a workflow map. ``workspace_id`` lets the API refuse a map of another workspace."""

    workspace_id: int
    workflow_id: int = Field(gt=0)
    trigger_payload: dict[str, Any] = Field(default_factory=dict)


@task_args("workflows.run_node")
class RunNodeArgs(TaskArgs):
    """Run one node of a run; enqueued by the engine itself (the trigger, successors, joins, wait resumes)."""

    workspace_id: int
    run_id: int = Field(gt=0)
    node_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
