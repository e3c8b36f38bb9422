"""Celery faces of the growth jobs: parse, call the plain logic with the run's session, return the outcome."""

from __future__ import annotations

from typing import Any

from tasks.growth import activation, churn, expansion, invitations, nps, releases
from tasks.growth.args import (
    DetectExpansionArgs,
    ExpireInvitationsArgs,
    PublishReleasesArgs,
    RecordMilestoneArgs,
    ScheduleNPSSurveysArgs,
    ScoreChurnRiskArgs,
    SnapshotNPSArgs,
    SyncUsageMilestonesArgs,
)
from workers.app import app
from workers.errors import BadInput
from workers.jobtask import JobTask
from workers.ledger import utcnow
from workers.queues import Queue


@app.task(name="growth.record_milestone", base=JobTask, bind=True, queue=Queue.ANALYTICS, max_retries=5)
def record_milestone(self: JobTask, args: RecordMilestoneArgs) -> dict[str, Any]:
    return activation.record_milestone(self.session, args.workspace_id, args.user_id, args.milestone, args.occurred_at)


@app.task(name="growth.sync_usage_milestones", base=JobTask, bind=True, queue=Queue.ANALYTICS, max_retries=5)
def sync_usage_milestones(self: JobTask, args: SyncUsageMilestonesArgs) -> dict[str, Any]:
    return activation.sync_usage_milestones(
        self.session, utcnow(), batch_size=args.batch_size, max_batches=args.max_batches
    )


@app.task(name="growth.score_churn_risk", base=JobTask, bind=True, queue=Queue.ANALYTICS, max_retries=3)
def score_churn_risk(self: JobTask, args: ScoreChurnRiskArgs) -> dict[str, Any]:
    result = churn.score_churn_risk(self.session, utcnow(), workspace_id=args.workspace_id)
    if args.workspace_id is not None and result["workspaces_scored"] == 0:
        raise BadInput(f"workspace {args.workspace_id} has no live subscription to score")
    return result


@app.task(name="growth.detect_expansion", base=JobTask, bind=True, queue=Queue.ANALYTICS, max_retries=3)
def detect_expansion(self: JobTask, args: DetectExpansionArgs) -> dict[str, Any]:
    return expansion.detect_expansion(self.session, utcnow())


@app.task(name="growth.snapshot_nps", base=JobTask, bind=True, queue=Queue.ANALYTICS, max_retries=3)
def snapshot_nps(self: JobTask, args: SnapshotNPSArgs) -> dict[str, Any]:
    return nps.snapshot_nps(self.session, utcnow())


@app.task(name="growth.schedule_nps_surveys", base=JobTask, bind=True, queue=Queue.ANALYTICS, max_retries=3)
def schedule_nps_surveys(self: JobTask, args: ScheduleNPSSurveysArgs) -> dict[str, Any]:
    return nps.schedule_nps_surveys(self.session, utcnow())


@app.task(name="growth.expire_invitations", base=JobTask, bind=True, queue=Queue.ANALYTICS, max_retries=3)
def expire_invitations(self: JobTask, args: ExpireInvitationsArgs) -> dict[str, Any]:
    return invitations.expire_invitations(self.session, utcnow())


@app.task(name="growth.publish_releases", base=JobTask, bind=True, queue=Queue.ANALYTICS, max_retries=3)
def publish_releases(self: JobTask, args: PublishReleasesArgs) -> dict[str, Any]:
    return releases.publish_releases(self.session, utcnow())
