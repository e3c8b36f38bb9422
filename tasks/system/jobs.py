"""Celery faces of the system jobs."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from celeryconfig import LONGEST_HARD_TIME_LIMIT
from tasks.system.args import PingArgs, PruneLedgerArgs, RedeliverStaleArgs
from workers.app import app
from workers.jobtask import JobTask
from workers.ledger import prune_finished, sweep_stale
from workers.queues import Queue
from workers.settings import get_settings


@app.task(name="system.ping", base=JobTask, bind=True, queue=Queue.DEFAULT, max_retries=3)
def ping(self: JobTask, args: PingArgs) -> dict[str, Any]:
    if args.sleep_seconds:
        time.sleep(args.sleep_seconds)
    return {"message": args.message, "job_id": str(self.job_id)}


@app.task(name="system.redeliver_stale", base=JobTask, bind=True, queue=Queue.DEFAULT, max_retries=3)
def redeliver_stale(self: JobTask, args: RedeliverStaleArgs) -> dict[str, Any]:
    settings = get_settings()
    due = sweep_stale(
        self.session,
        grace=timedelta(seconds=settings.redeliver_grace_seconds),
        # A run older than any hard time limit has lost its worker (or its message): publish it again.
        max_running=timedelta(seconds=LONGEST_HARD_TIME_LIMIT + settings.redeliver_grace_seconds),
        limit=args.limit,
    )
    self.publish_after_commit(due)
    return {"republished": len(due)}


@app.task(name="system.prune_ledger", base=JobTask, bind=True, queue=Queue.DEFAULT, max_retries=3)
def prune_ledger(self: JobTask, args: PruneLedgerArgs) -> dict[str, Any]:
    retention = timedelta(days=get_settings().ledger_retention_days)
    deleted = prune_finished(
        self.session, retention=retention, batch_size=args.batch_size, max_batches=args.max_batches
    )
    return {"deleted": deleted, "retention_days": retention.days}
