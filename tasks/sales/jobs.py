"""Celery faces of the sales jobs: parse, call the plain logic with the run's session, return the outcome."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tasks.sales import adaptive, fanout, ingest, salesboard
from tasks.sales.args import (
    IngestActivitiesArgs,
    LearnAdaptiveAIArgs,
    ScheduleAdaptiveLearningArgs,
    ScheduleSalesboardSyncsArgs,
    SyncSalesboardArgs,
)
from workers.app import app
from workers.jobtask import JobTask
from workers.queues import Queue


@app.task(name="sales.ingest_activities", base=JobTask, bind=True, queue=Queue.ANALYTICS, max_retries=5)
def ingest_activities(self: JobTask, args: IngestActivitiesArgs) -> dict[str, Any]:
    return ingest.ingest_activities(self.session, args.workspace_id, args.activities).as_dict()


@app.task(name="sales.sync_salesboard", base=JobTask, bind=True, queue=Queue.ANALYTICS, max_retries=3)
def sync_salesboard(self: JobTask, args: SyncSalesboardArgs) -> dict[str, Any]:
    return salesboard.sync_salesboard(self.session, args.workspace_id, rep_id=args.rep_id, force=args.force)


@app.task(name="sales.learn_adaptive_ai", base=JobTask, bind=True, queue=Queue.ANALYTICS, max_retries=3)
def learn_adaptive_ai(self: JobTask, args: LearnAdaptiveAIArgs) -> dict[str, Any]:
    return adaptive.learn_adaptive_ai(self.session, args.workspace_id)


@app.task(name="sales.schedule_salesboard_syncs", base=JobTask, bind=True, queue=Queue.ANALYTICS, max_retries=3)
def schedule_salesboard_syncs(self: JobTask, args: ScheduleSalesboardSyncsArgs) -> dict[str, Any]:
    now = datetime.now(UTC)
    slot = fanout.five_minute_slot(now)
    workspaces = fanout.board_workspaces(self.session, now)
    for workspace_id in workspaces:
        # Forced: the beat's cadence equals the cache's 5 minutes, so with queue jitter an unforced sync would
        # find the previous beat's sync "fresh" about half the time and leave the board 10 minutes old.
        # A sync with nothing new to roll up only recomputes today's rows.
        self.enqueue_child(
            "sales.sync_salesboard",
            {"workspace_id": workspace_id, "force": True},
            idempotency_key=f"beat:sync_salesboard:{slot}",
        )
    return {"workspaces": len(workspaces), "slot": slot}


@app.task(name="sales.schedule_adaptive_learning", base=JobTask, bind=True, queue=Queue.ANALYTICS, max_retries=3)
def schedule_adaptive_learning(self: JobTask, args: ScheduleAdaptiveLearningArgs) -> dict[str, Any]:
    now = datetime.now(UTC)
    night = now.date().isoformat()
    workspaces = fanout.learning_workspaces(self.session, now)
    for workspace_id in workspaces:
        self.enqueue_child(
            "sales.learn_adaptive_ai", {"workspace_id": workspace_id}, idempotency_key=f"beat:learn_adaptive_ai:{night}"
        )
    return {"workspaces": len(workspaces), "night": night}
