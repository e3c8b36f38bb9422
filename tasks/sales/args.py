"""Argument models of the sales tasks."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from tasks.sales.schemas import MAX_BATCH, ActivityIn
from workers.contracts import TaskArgs, task_args


@task_args("sales.ingest_activities")
class IngestActivitiesArgs(TaskArgs):
    """A batch of rep activity, idempotent on each item's `activity_id` within the workspace."""

    workspace_id: int
    activities: list[ActivityIn] = Field(min_length=1, max_length=MAX_BATCH)


@task_args("sales.sync_salesboard")
class SyncSalesboardArgs(TaskArgs):
    """Refresh the AI Salesboard of a workspace (or one rep); within 5 minutes of the last sync the stored
    metrics are returned unless `force`."""

    workspace_id: int
    rep_id: int | None = Field(default=None, gt=0)
    force: bool = False


@task_args("sales.learn_adaptive_ai")
class LearnAdaptiveAIArgs(TaskArgs):
    workspace_id: int


@task_args("sales.schedule_salesboard_syncs")
class ScheduleSalesboardSyncsArgs(TaskArgs):
    """Beat's fan-out: one `sales.sync_salesboard` per workspace with recent activity. Not for API callers: it
    spans every workspace."""

    api_visible: ClassVar[bool] = False


@task_args("sales.schedule_adaptive_learning")
class ScheduleAdaptiveLearningArgs(TaskArgs):
    """Beat's nightly fan-out: one `sales.learn_adaptive_ai` per workspace with outbound email to learn from."""

    api_visible: ClassVar[bool] = False
