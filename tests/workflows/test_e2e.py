"""Workflows through a real worker on the real broker: the ledger, the outbox, waits swept by run_at."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select, update

from models.core import Job, JobStatus
from models.workflows import NodeRunStatus, WorkflowRun, WorkflowRunStatus
from tasks.workflows import engine
from tests.support.jobs import wait_for_job
from tests.workflows.driver import Driver
from tests.workflows.flow import execute, node_runs, side_effects_per_node, wait_for_run
from tests.workflows.maps import edge, email, node
from tests.workflows.receiver import Script, WebhookReceiver
from workers.db import session_scope
from workers.ledger import Publishable, publish
from workers.settings import get_settings


def full_map(webhook_url: str) -> dict[str, Any]:
    """Every node type: trigger, condition, branch, three lanes (one waits), join, and all five action kinds."""
    return {
        "nodes": [
            node("start", "trigger", required=["lead.email"]),
            node("qualified", "condition", expression={">=": [{"var": "lead.score"}, 70]}),
            node("fan", "branch"),
            email("intro"),
            node("hook", "action", kind="webhook", params={"url": webhook_url, "timeout_seconds": 5}),
            node("pause", "wait", seconds=1),
            node("task", "action", kind="create_task", params={"title": "Follow up {{lead.name}}", "due_in_days": 2}),
            node("j", "join"),
            node(
                "crm",
                "action",
                kind="update_crm",
                params={"object": "lead", "record_id": "{{lead.id}}", "fields": {"stage": "engaged"}},
            ),
            node("nurture", "action", kind="notify", params={"channel": "email", "message": "nurture {{lead.name}}"}),
        ],
        "edges": [
            edge("start", "qualified"),
            edge("qualified", "fan", when=True),
            edge("qualified", "nurture", when=False),
            edge("fan", "intro"),
            edge("fan", "hook"),
            edge("fan", "pause"),
            edge("pause", "task"),
            edge("intro", "j"),
            edge("hook", "j"),
            edge("task", "j"),
            edge("j", "crm"),
        ],
    }


LEAD = {"lead": {"id": 501, "email": "lin@example.com", "name": "Lin", "score": 88}}


def test_a_map_with_every_node_type_runs_to_completion_on_a_real_worker(
    celery_worker: Any, workspace_id: int, save_map: Callable[..., int]
) -> None:
    with session_scope() as session:
        engine.set_allow_private_webhooks(session, workspace_id, True)
    with WebhookReceiver() as receiver:
        workflow_id = save_map(full_map(receiver.url()))
        job = execute(workspace_id, workflow_id, LEAD)
        assert job.status is JobStatus.SUCCEEDED, job.error
        run_id = job.result["run_id"]
        # The wait's resume is a ledger row due in a second; the test plays beat's sweeper to publish it.
        run = wait_for_run(run_id, sweep=True)

    assert run.status is WorkflowRunStatus.SUCCEEDED, run.error
    assert run.nodes_done == run.nodes_total == 10
    nodes = node_runs(run_id)
    assert nodes["nurture"].status is NodeRunStatus.SKIPPED
    ran = {node_id for node_id, row in nodes.items() if row.status is NodeRunStatus.SUCCEEDED}
    assert ran == set(nodes) - {"nurture"}
    assert all(nodes[node_id].attempts == 1 for node_id in ran)
    assert nodes["pause"].finished_at >= nodes["pause"].resume_at
    assert side_effects_per_node(run_id) == {"intro": 1, "hook": 1, "task": 1, "crm": 1}
    assert len(receiver.requests) == 1
    assert receiver.requests[0].body["payload"] == LEAD
    with session_scope() as session:
        node_jobs = session.execute(
            select(Job.status, func.count())
            .where(Job.workspace_id == workspace_id, Job.task == "workflows.run_node")
            .group_by(Job.status)
        ).all()
        assert dict(node_jobs) == {JobStatus.SUCCEEDED: len(ran) + 1}  # every node that ran, plus the resume
        assert session.get_one(WorkflowRun, run_id).trigger_job_id == job.id


def test_an_invalid_map_fails_the_execute_job_with_the_reason(
    celery_worker: Any, workspace_id: int, save_map: Callable[..., int]
) -> None:
    cyclic = {
        "nodes": [node("start", "trigger"), node("j", "join"), email("a")],
        "edges": [edge("start", "j"), edge("j", "a"), edge("a", "j")],
    }
    workflow_id = save_map(cyclic, validate=False)
    job = execute(workspace_id, workflow_id, LEAD)
    assert job.status is JobStatus.FAILED
    assert job.error == f"workflow {workflow_id} rejected: cycle: the map loops through 'a', 'j'"
    with session_scope() as session:
        assert session.execute(select(func.count()).where(WorkflowRun.workflow_id == workflow_id)).scalar_one() == 0


def test_a_map_of_another_workspace_is_not_run(
    celery_worker: Any, workspace_id: int, save_map: Callable[..., int], make_workspace: Callable[..., int]
) -> None:
    workflow_id = save_map({"nodes": [node("start", "trigger"), email("a")], "edges": [edge("start", "a")]})
    other = make_workspace()
    job = execute(other, workflow_id, LEAD)
    assert job.status is JobStatus.FAILED
    assert job.error == f"workflow {workflow_id} not found in workspace {other}"


def test_a_node_that_fails_for_good_fails_the_run(
    celery_worker: Any, workspace_id: int, save_map: Callable[..., int]
) -> None:
    with session_scope() as session:
        engine.set_allow_private_webhooks(session, workspace_id, True)
    with WebhookReceiver(Script(default=(422, 0.0))) as receiver:
        workflow_id = save_map(full_map(receiver.url()))
        job = execute(workspace_id, workflow_id, LEAD)
        run = wait_for_run(job.result["run_id"], sweep=True)
    assert run.status is WorkflowRunStatus.FAILED
    assert run.error == "node 'hook' failed: webhook node 'hook': webhook answered 422"
    nodes = node_runs(run.id)
    assert nodes["hook"].status is NodeRunStatus.FAILED
    assert nodes["hook"].attempts == 1
    assert nodes["crm"].status is NodeRunStatus.CANCELLED
    assert "crm" not in side_effects_per_node(run.id)
    with session_scope() as session:
        hook_job = session.execute(
            select(Job).where(Job.workspace_id == workspace_id, Job.idempotency_key.like("%:hook:run"))
        ).scalar_one()
        assert hook_job.status is JobStatus.FAILED
        assert hook_job.error == "webhook node 'hook': webhook answered 422"


def test_a_node_job_lost_too_often_fails_the_run(
    celery_worker: Any, workspace_id: int, save_map: Callable[..., int]
) -> None:
    driver = Driver(workspace_id)
    run_id = driver.execute(
        save_map({"nodes": [node("start", "trigger"), email("a")], "edges": [edge("start", "a")]}), LEAD
    )
    with session_scope() as session:
        job = session.execute(
            select(Job).where(Job.workspace_id == workspace_id, Job.task == "workflows.run_node")
        ).scalar_one()
        # As if workers had died running it MAX_LOST_RUNS - 1 times already: this delivery is the last straw.
        session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(status=JobStatus.RUNNING, lost_runs=get_settings().max_lost_runs - 1)
        )
        item = Publishable(job.id, job.task, job.args)
    publish([item])
    assert wait_for_job(item.id).status is JobStatus.FAILED
    run = wait_for_run(run_id)
    assert run.status is WorkflowRunStatus.FAILED
    assert run.error is not None and "run lost" in run.error
    assert node_runs(run_id)["a"].status is NodeRunStatus.CANCELLED
