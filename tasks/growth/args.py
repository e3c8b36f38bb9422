"""Argument models of the growth tasks."""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from models.growth import Milestone
from workers.contracts import TaskArgs, task_args


@task_args("growth.record_milestone")
class RecordMilestoneArgs(TaskArgs):
    workspace_id: int = Field(ge=1)
    user_id: int | None = Field(default=None, ge=1)
    milestone: Milestone
    occurred_at: AwareDatetime


@task_args("growth.sync_usage_milestones")
class SyncUsageMilestonesArgs(TaskArgs):
    batch_size: int = Field(default=50_000, ge=100, le=500_000)
    max_batches: int = Field(default=20, ge=1, le=1000)


@task_args("growth.score_churn_risk")
class ScoreChurnRiskArgs(TaskArgs):
    """No workspace: the nightly run over every workspace (retrains the model). One workspace: on demand."""

    workspace_id: int | None = Field(default=None, ge=1)


@task_args("growth.detect_expansion")
class DetectExpansionArgs(TaskArgs):
    pass


@task_args("growth.snapshot_nps")
class SnapshotNPSArgs(TaskArgs):
    pass


@task_args("growth.schedule_nps_surveys")
class ScheduleNPSSurveysArgs(TaskArgs):
    pass


@task_args("growth.expire_invitations")
class ExpireInvitationsArgs(TaskArgs):
    pass


@task_args("growth.publish_releases")
class PublishReleasesArgs(TaskArgs):
    pass
