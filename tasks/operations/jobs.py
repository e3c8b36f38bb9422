"""Celery faces of the operations jobs."""

from __future__ import annotations

from typing import Any

from tasks.operations.args import RecoverOrphansArgs
from tasks.operations.recovery import recover_orphaned_runs
from workers.app import app
from workers.jobtask import JobTask
from workers.queues import Queue


@app.task(name="operations.recover_orphans", base=JobTask, bind=True, queue=Queue.DEFAULT, max_retries=3)
def recover_orphans(self: JobTask, args: RecoverOrphansArgs) -> dict[str, Any]:
    recovered = recover_orphaned_runs(self.session, min_age_seconds=args.min_age_seconds, limit=args.limit)
    self.publish_after_commit(recovered)
    return {"recovered": len(recovered)}
