"""SIGKILL the worker in the middle of a 20-node workflow: the run completes, every side effect exactly once.

Kept apart from modules that use the in-process worker, which would otherwise take the messages itself.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from models.core import Job, JobStatus
from models.workflows import NodeRunStatus, WorkflowRunStatus
from tasks.workflows import engine
from tests.support.services import WorkerProcess, wait_until
from tests.workflows.flow import execute, node_runs, side_effects_per_node, wait_for_run
from tests.workflows.maps import edge, node
from tests.workflows.receiver import Script, WebhookReceiver
from workers.db import session_scope

LANES = 4
STEPS = 4
WEBHOOK_DELAY_SECONDS = 0.6


def twenty_node_map(webhook_url: str) -> dict[str, Any]:
    """trigger -> branch -> 4 lanes of 4 actions -> join -> notify; lane n has its webhook at step n."""
    kinds = ["send_email", "create_task", "update_crm", "notify"]
    params = {
        "send_email": {"to": "{{lead.email}}", "subject": "step", "body": "hi"},
        "create_task": {"title": "call {{lead.name}}"},
        "update_crm": {"object": "lead", "record_id": "{{lead.id}}", "fields": {"touched": True}},
        "notify": {"channel": "in_app", "message": "step done"},
    }
    nodes = [node("start", "trigger"), node("fan", "branch"), node("merge", "join")]
    edges = [edge("start", "fan")]
    for lane in range(LANES):
        previous = "fan"
        for step in range(STEPS):
            node_id = f"l{lane}s{step}"
            if step == lane:
                nodes.append(
                    node(node_id, "action", kind="webhook", params={"url": webhook_url, "timeout_seconds": 10})
                )
            else:
                kind = kinds[(lane + step) % len(kinds)]
                nodes.append(node(node_id, "action", kind=kind, params=params[kind]))
            edges.append(edge(previous, node_id))
            previous = node_id
        edges.append(edge(previous, "merge"))
    nodes.append(node("done", "action", kind="notify", params={"channel": "slack", "message": "all lanes done"}))
    edges.append(edge("merge", "done"))
    return {"nodes": nodes, "edges": edges}


def kill_pool(worker: WorkerProcess) -> list[int]:
    pids = worker.pool_pids()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


def test_killed_worker_mid_workflow_resumes_and_repeats_no_side_effect(
    db_url: str, workspace_id: int, save_map: Callable[..., int]
) -> None:
    with session_scope() as session:
        engine.set_allow_private_webhooks(session, workspace_id, True)
    with WebhookReceiver(Script(default=(200, WEBHOOK_DELAY_SECONDS))) as receiver:
        definition = twenty_node_map(receiver.url())
        assert len(definition["nodes"]) == 20
        workflow_id = save_map(definition)
        # One pool process: the process killed is the one running the node.
        with WorkerProcess(queues=["default"], concurrency=1) as worker:
            job = execute(workspace_id, workflow_id, {"lead": {"id": 7, "email": "kim@example.com", "name": "Kim"}})
            assert job.status is JobStatus.SUCCEEDED, job.error
            run_id = job.result["run_id"]

            killed: list[int] = []
            for webhooks_seen in (2, 4):
                # The receiver holds each POST for a moment: kill while the node's POST is in flight, after the
                # receiver has applied it but before the node's transaction could commit.
                wait_until(lambda n=webhooks_seen: len(receiver.requests) >= n, 90, 0.01, f"webhook {webhooks_seen}")
                killed += kill_pool(worker)
                gone = set(killed)
                wait_until(
                    lambda gone=gone: worker.pool_pids() and not set(worker.pool_pids()) & gone, 60, 0.1, "respawn"
                )
            run = wait_for_run(run_id, timeout=90)

    assert len(killed) == 2
    assert run.status is WorkflowRunStatus.SUCCEEDED, run.error
    assert run.nodes_done == run.nodes_total == 20
    nodes = node_runs(run_id)
    assert {row.status for row in nodes.values()} == {NodeRunStatus.SUCCEEDED}

    action_nodes = {n["id"] for n in definition["nodes"] if n["type"] == "action"}
    assert side_effects_per_node(run_id) == dict.fromkeys(action_nodes, 1)

    # The receiver applied each webhook once; the two killed nodes posted twice with the same key.
    webhook_keys = {f"artisan-wf-{run_id}-l{lane}s{lane}" for lane in range(LANES)}
    assert receiver.applied_keys == webhook_keys
    assert sorted(receiver.posts_by_key.values()) == [1, 1, 2, 2]
    repeated = {key.rsplit("-", 1)[1] for key, posts in receiver.posts_by_key.items() if posts == 2}
    assert {nodes[node_id].attempts for node_id in repeated} == {2}
    assert all(row.attempts == 1 for node_id, row in nodes.items() if node_id not in repeated and row.started_at)

    with session_scope() as session:
        killed_jobs = session.execute(
            select(Job.attempts, Job.lost_runs, Job.status).where(
                Job.workspace_id == workspace_id,
                Job.idempotency_key.in_([f"workflows:{run_id}:{node_id}:run" for node_id in repeated]),
            )
        ).all()
    assert [tuple(row) for row in killed_jobs] == [(2, 1, JobStatus.SUCCEEDED)] * 2
