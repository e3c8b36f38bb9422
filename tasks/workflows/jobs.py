"""Celery faces of the workflow engine: parse arguments, call tasks.workflows.engine, record the outcome."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import select

from models.core import Job, JobStatus
from tasks.workflows import engine
from tasks.workflows.args import ExecuteWorkflowArgs, RunNodeArgs
from workers.app import app
from workers.db import session_scope
from workers.jobtask import JobTask
from workers.ledger import utcnow
from workers.queues import Queue

log = logging.getLogger("artisan.workflows")


class WorkflowNodeTask(JobTask):
    """JobTask that also records a node's final failure on its node run and run."""

    abstract = True

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        # Called once JobTask has given up (bad input, or retries exhausted); its session has rolled back,
        # so the failure is written in a transaction of its own.
        self._record_failure(kwargs, str(exc) or type(exc).__name__)

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        # The body always returns a dict; None means JobTask did not run it: a duplicate delivery (nothing to do)
        # or a job lost to killed workers too often, which JobTask fails in the ledger without raising.
        if retval is not None:
            return
        try:
            with session_scope() as session:
                status, error = session.execute(select(Job.status, Job.error).where(Job.id == uuid.UUID(task_id))).one()
        except Exception as error:  # the run stays visible as running; the ledger keeps the job's outcome
            log.error("job=%s event=ledger-unavailable error=%s", task_id, type(error).__name__)
            return
        if status is JobStatus.FAILED:
            self._record_failure(kwargs, error or "the job failed")

    def _record_failure(self, kwargs: Any, reason: str) -> None:
        try:
            parsed = RunNodeArgs.model_validate(kwargs)
        except ValueError:
            return
        try:
            with session_scope() as session:
                engine.record_node_failure(
                    session,
                    workspace_id=parsed.workspace_id,
                    run_id=parsed.run_id,
                    node_id=parsed.node_id,
                    reason=reason,
                )
        except Exception as error:  # the database may be the reason the node failed; the ledger has the error
            log.error("run=%s node=%s event=failure-not-recorded error=%s", parsed.run_id, parsed.node_id, error)


@app.task(name="workflows.execute", base=JobTask, bind=True, queue=Queue.DEFAULT, max_retries=3)
def execute(self: JobTask, args: ExecuteWorkflowArgs) -> dict[str, Any]:
    run = engine.start_run(
        self.session,
        workspace_id=args.workspace_id,
        workflow_id=args.workflow_id,
        trigger_payload=args.trigger_payload,
        enqueue=self.enqueue_child,
        trigger_job_id=self.job_id,
    )
    return {"run_id": run.id, "workflow_id": run.workflow_id, "nodes": run.nodes_total}


@app.task(name="workflows.run_node", base=WorkflowNodeTask, bind=True, queue=Queue.DEFAULT, max_retries=4)
def run_node(self: WorkflowNodeTask, args: RunNodeArgs) -> dict[str, Any]:
    with session_scope() as attempt_session:
        engine.mark_node_started(
            attempt_session, workspace_id=args.workspace_id, run_id=args.run_id, node_id=args.node_id, now=utcnow()
        )
    return engine.run_node(
        self.session,
        workspace_id=args.workspace_id,
        run_id=args.run_id,
        node_id=args.node_id,
        enqueue=self.enqueue_child,
    )
