"""Durable execution of workflow maps: plain functions over a Session, driven by the workflows.* jobs.

Each node runs as its own ``workflows.run_node`` job. One node's work happens in one transaction (the job's
session): its side-effect row, its node run's new status and output, the join and run counters, and the ledger
rows of the next nodes (the outbox) commit together or not at all. Hence:

- a worker killed mid-node leaves nothing behind; the redelivered job runs the node again from scratch;
- a redelivered job for a node that already committed finds the node run finished and does nothing, so a
  completed node's side effect and its successors are never repeated;
- a side effect is also keyed by its node run (unique ``workflow_side_effects.node_run_id``), and a webhook
  carries a stable Idempotency-Key, for the one effect that leaves the database before the commit.

Joins wait for every incoming edge: each arriving edge increments the join's counters with one ``UPDATE ...
RETURNING`` (a row lock, so concurrent branches serialise on it) and only the arrival that brings the count to
the join's in-degree enqueues it. Paths a condition did not take are marked ``skipped`` at once, and count as
arrivals (not taken), so a join after a condition still fires exactly once. The run itself completes through
the same kind of counter (``nodes_done``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from threading import Lock
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from models.workflows import (
    TERMINAL_NODE_STATUSES,
    NodeRunStatus,
    SideEffectKind,
    WorkflowMap,
    WorkflowNodeRun,
    WorkflowRun,
    WorkflowRunStatus,
    WorkflowSetting,
    WorkflowSideEffect,
)
from tasks.workflows.definition import (
    ACTION_PARAMS,
    ActionKind,
    InvalidWorkflow,
    Node,
    NodeType,
    WebhookParams,
    WorkflowGraph,
    check_trigger_payload,
    validate_definition,
    wait_seconds,
)
from tasks.workflows.expressions import EvaluationError, evaluate, render_template, truthy
from tasks.workflows.webhooks import (
    WebhookRefused,
    WebhookRejected,
    WebhookUnavailable,
    post_webhook,
    url_origin,
)
from workers.errors import BadInput, Transient
from workers.ledger import utcnow

log = logging.getLogger("artisan.workflows")

RUN_NODE_TASK = "workflows.run_node"


class Enqueue(Protocol):
    """Writes a child job to the ledger in the current transaction (``JobTask.enqueue_child``)."""

    def __call__(
        self,
        task: str,
        kwargs: dict[str, Any],
        *,
        run_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Any: ...


# A run's definition is an immutable snapshot, so its parsed graph can be reused by every node of the run.
# Keyed by id and creation time: ids alone repeat across databases (tests and benchmarks use several).
_GRAPH_CACHE: OrderedDict[tuple[int, datetime], WorkflowGraph] = OrderedDict()
_GRAPH_CACHE_SIZE = 256
_graph_lock = Lock()


def run_graph(run: WorkflowRun) -> WorkflowGraph:
    key = (run.id, run.created_at)
    with _graph_lock:
        graph = _GRAPH_CACHE.get(key)
        if graph is not None:
            _GRAPH_CACHE.move_to_end(key)
            return graph
    graph = validate_definition(run.definition)
    with _graph_lock:
        _GRAPH_CACHE[key] = graph
        while len(_GRAPH_CACHE) > _GRAPH_CACHE_SIZE:
            _GRAPH_CACHE.popitem(last=False)
    return graph


def node_job_key(run_id: int, node_id: str, purpose: str = "run") -> str:
    """Ledger idempotency key of a node's job: enqueueing the same node twice yields one job."""
    return f"workflows:{run_id}:{node_id}:{purpose}"


def webhook_idempotency_key(run_id: int, node_id: str) -> str:
    """Sent to the receiver; the same for every attempt and every redelivery of this node in this run."""
    return f"artisan-wf-{run_id}-{node_id}"


# --- maps and settings ---------------------------------------------------------------------------------


def create_map(
    session: Session,
    workspace_id: int,
    name: str,
    definition: dict[str, Any],
    *,
    description: str | None = None,
    enabled: bool = True,
) -> WorkflowMap:
    """Store a new map after validating it; raises InvalidWorkflow with the reason and stores nothing."""
    validate_definition(definition)
    workflow = WorkflowMap(
        workspace_id=workspace_id, name=name, description=description, definition=definition, enabled=enabled
    )
    session.add(workflow)
    session.flush()
    return workflow


def update_definition(session: Session, workflow: WorkflowMap, definition: dict[str, Any]) -> WorkflowMap:
    """Replace a map's definition (validated first) and bump its version; running runs keep their snapshot."""
    validate_definition(definition)
    workflow.definition = definition
    workflow.version = WorkflowMap.version + 1
    workflow.updated_at = utcnow()
    session.flush()
    session.refresh(workflow)
    return workflow


def set_allow_private_webhooks(session: Session, workspace_id: int, allowed: bool) -> None:
    session.execute(
        pg_insert(WorkflowSetting)
        .values(workspace_id=workspace_id, allow_private_webhooks=allowed, updated_at=utcnow())
        .on_conflict_do_update(
            index_elements=[WorkflowSetting.workspace_id],
            set_={"allow_private_webhooks": allowed, "updated_at": utcnow()},
        )
    )


def allows_private_webhooks(session: Session, workspace_id: int) -> bool:
    allowed = session.execute(
        select(WorkflowSetting.allow_private_webhooks).where(WorkflowSetting.workspace_id == workspace_id)
    ).scalar_one_or_none()
    return bool(allowed)


# --- starting a run --------------------------------------------------------------------------------------


def start_run(
    session: Session,
    *,
    workspace_id: int,
    workflow_id: int,
    trigger_payload: dict[str, Any],
    enqueue: Enqueue,
    trigger_job_id: Any = None,
) -> WorkflowRun:
    """Validate the map and the payload, create the run and its node runs, and enqueue the trigger node.

    Raises BadInput with the reason for a missing, disabled or invalid map (nothing is written then).
    """
    workflow = session.execute(
        select(WorkflowMap).where(WorkflowMap.id == workflow_id, WorkflowMap.workspace_id == workspace_id)
    ).scalar_one_or_none()
    if workflow is None:
        raise BadInput(f"workflow {workflow_id} not found in workspace {workspace_id}")
    if not workflow.enabled:
        raise BadInput(f"workflow {workflow_id} is disabled")
    try:
        graph = validate_definition(workflow.definition)
        check_trigger_payload(graph, trigger_payload)
    except InvalidWorkflow as error:
        raise BadInput(f"workflow {workflow_id} rejected: {error}") from None

    run = WorkflowRun(
        workspace_id=workspace_id,
        workflow_id=workflow.id,
        workflow_version=workflow.version,
        definition=workflow.definition,
        trigger_payload=trigger_payload,
        trigger_job_id=trigger_job_id,
        status=WorkflowRunStatus.RUNNING,
        nodes_total=len(graph.nodes),
        nodes_done=0,
    )
    session.add(run)
    session.flush()
    # Every node gets its history row up front: joins count arrivals on it, and the history shows the whole map.
    session.execute(
        insert(WorkflowNodeRun),
        [
            {
                "workspace_id": workspace_id,
                "run_id": run.id,
                "node_id": node_id,
                "node_type": graph.nodes[node_id].type,
                "status": NodeRunStatus.PENDING,
            }
            for node_id in graph.order
        ],
    )
    _enqueue_node(enqueue, run, graph.trigger)
    log.info("workflow=%s run=%s event=started nodes=%d", workflow.id, run.id, len(graph.nodes))
    return run


def _enqueue_node(enqueue: Enqueue, run: WorkflowRun, node_id: str) -> None:
    enqueue(
        RUN_NODE_TASK,
        {"workspace_id": run.workspace_id, "run_id": run.id, "node_id": node_id},
        idempotency_key=node_job_key(run.id, node_id),
    )


# --- running one node -------------------------------------------------------------------------------------


def mark_node_started(session: Session, *, workspace_id: int, run_id: int, node_id: str, now: datetime) -> None:
    """Count an attempt in its own short transaction, so the history keeps attempts that later rolled back."""
    # History bookkeeping only: losing the last few of these in a database crash costs an attempt count, never
    # a side effect, so this commit need not wait for the WAL flush (saves a disk sync on every node).
    session.execute(text("SET LOCAL synchronous_commit TO OFF"))
    session.execute(
        update(WorkflowNodeRun)
        .where(
            WorkflowNodeRun.run_id == run_id,
            WorkflowNodeRun.node_id == node_id,
            WorkflowNodeRun.workspace_id == workspace_id,
            WorkflowNodeRun.status.in_([NodeRunStatus.PENDING, NodeRunStatus.RUNNING]),
        )
        .values(
            status=NodeRunStatus.RUNNING,
            attempts=WorkflowNodeRun.attempts + 1,
            started_at=func.coalesce(WorkflowNodeRun.started_at, now),
        )
    )


def run_node(
    session: Session,
    *,
    workspace_id: int,
    run_id: int,
    node_id: str,
    enqueue: Enqueue,
    now: datetime | None = None,
    webhook_sleep: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Run one node of a run, at most once to completion; returns a short summary for the ledger."""
    now = now or utcnow()
    run = session.execute(
        select(WorkflowRun).where(WorkflowRun.id == run_id, WorkflowRun.workspace_id == workspace_id)
    ).scalar_one_or_none()
    if run is None:
        raise BadInput(f"workflow run {run_id} not found in workspace {workspace_id}")
    graph = run_graph(run)
    node = graph.nodes.get(node_id)
    if node is None:
        raise BadInput(f"workflow run {run_id} has no node {node_id!r}")

    # The row lock makes a duplicate delivery of this node wait here, then see the finished status below.
    node_run = session.execute(
        select(WorkflowNodeRun)
        .where(WorkflowNodeRun.run_id == run_id, WorkflowNodeRun.node_id == node_id)
        .with_for_update()
    ).scalar_one()
    if node_run.status in TERMINAL_NODE_STATUSES:
        return {"run_id": run_id, "node_id": node_id, "status": node_run.status.value, "repeat": True}
    if run.status is not WorkflowRunStatus.RUNNING:
        node_run.status = NodeRunStatus.CANCELLED
        node_run.finished_at = now
        return {"run_id": run_id, "node_id": node_id, "status": NodeRunStatus.CANCELLED.value}
    if node_run.started_at is None:
        node_run.started_at = now

    payload = run.trigger_payload
    outcome: bool | None = None
    if node.type is NodeType.TRIGGER:
        node_run.input = payload
        output: dict[str, Any] = {"accepted": True}
    elif node.type is NodeType.CONDITION:
        expression = node.config["expression"]
        node_run.input = {"expression": expression}
        try:
            result = evaluate(expression, payload)
        except EvaluationError as error:
            raise BadInput(f"condition node {node_id!r}: {error}") from None
        outcome = truthy(result)
        output = {"result": result, "outcome": outcome}
    elif node.type is NodeType.ACTION:
        output = _perform_action(session, run, node, node_run, enqueue, webhook_sleep)
    elif node.type is NodeType.WAIT:
        waited = _wait(run, node, node_run, enqueue, now)
        if waited is None:
            return {
                "run_id": run_id,
                "node_id": node_id,
                "status": NodeRunStatus.WAITING.value,
                "resume_at": node_run.resume_at.isoformat() if node_run.resume_at else None,
            }
        output = waited
    elif node.type is NodeType.BRANCH:
        node_run.input = {}
        output = {"fan_out": [edge.target for edge in graph.outgoing[node_id]]}
    else:  # NodeType.JOIN
        node_run.input = {}
        output = {"arrived": node_run.arrivals, "taken": node_run.taken_arrivals}

    node_run.status = NodeRunStatus.SUCCEEDED
    node_run.output = output
    node_run.error = None
    node_run.finished_at = now
    taken, not_taken = graph.successors(node_id, outcome)
    done = 1
    for target in taken:
        done += _arrive(session, enqueue, run, graph, target, taken=True, now=now)
    for target in not_taken:
        done += _arrive(session, enqueue, run, graph, target, taken=False, now=now)
    finished = _count_done(session, run, done, now)
    log.info("run=%s node=%s type=%s event=succeeded", run_id, node_id, node.type.value)
    return {
        "run_id": run_id,
        "node_id": node_id,
        "status": NodeRunStatus.SUCCEEDED.value,
        "next": taken,
        "run_finished": finished,
    }


def _arrive(
    session: Session,
    enqueue: Enqueue,
    run: WorkflowRun,
    graph: WorkflowGraph,
    target: str,
    *,
    taken: bool,
    now: datetime,
) -> int:
    """Follow one edge into ``target``; returns how many nodes this marked skipped (they count as done)."""
    node = graph.nodes[target]
    if node.type is NodeType.JOIN:
        arrivals, taken_arrivals = session.execute(
            update(WorkflowNodeRun)
            .where(WorkflowNodeRun.run_id == run.id, WorkflowNodeRun.node_id == target)
            .values(
                arrivals=WorkflowNodeRun.arrivals + 1,
                taken_arrivals=WorkflowNodeRun.taken_arrivals + (1 if taken else 0),
            )
            .returning(WorkflowNodeRun.arrivals, WorkflowNodeRun.taken_arrivals)
        ).one()
        if arrivals < len(graph.incoming[target]):
            return 0
        if taken_arrivals > 0:
            _enqueue_node(enqueue, run, target)
            return 0
        return _skip(session, enqueue, run, graph, target, now)
    if taken:
        _enqueue_node(enqueue, run, target)
        return 0
    return _skip(session, enqueue, run, graph, target, now)


def _skip(
    session: Session, enqueue: Enqueue, run: WorkflowRun, graph: WorkflowGraph, node_id: str, now: datetime
) -> int:
    session.execute(
        update(WorkflowNodeRun)
        .where(
            WorkflowNodeRun.run_id == run.id,
            WorkflowNodeRun.node_id == node_id,
            WorkflowNodeRun.status == NodeRunStatus.PENDING,
        )
        .values(status=NodeRunStatus.SKIPPED, finished_at=now)
    )
    skipped = 1
    for edge in graph.outgoing[node_id]:
        skipped += _arrive(session, enqueue, run, graph, edge.target, taken=False, now=now)
    return skipped


def _count_done(session: Session, run: WorkflowRun, done: int, now: datetime) -> bool:
    """Add to the run's completion counter (last, to hold the run row's lock briefly); True when it finished."""
    nodes_done, nodes_total = session.execute(
        update(WorkflowRun)
        .where(WorkflowRun.id == run.id)
        .values(nodes_done=WorkflowRun.nodes_done + done)
        .returning(WorkflowRun.nodes_done, WorkflowRun.nodes_total)
    ).one()
    if nodes_done < nodes_total:
        return False
    session.execute(
        update(WorkflowRun)
        .where(WorkflowRun.id == run.id, WorkflowRun.status == WorkflowRunStatus.RUNNING)
        .values(status=WorkflowRunStatus.SUCCEEDED, finished_at=now)
    )
    log.info("run=%s event=succeeded nodes=%d", run.id, nodes_total)
    return True


def _wait(
    run: WorkflowRun, node: Node, node_run: WorkflowNodeRun, enqueue: Enqueue, now: datetime
) -> dict[str, Any] | None:
    """First visit: schedule the resume as a ledger row with run_at. Resume visit: the node's output."""
    if node_run.resume_at is None:
        seconds = wait_seconds(node)
        node_run.input = {"seconds": seconds}
        node_run.resume_at = now + timedelta(seconds=seconds)
        node_run.status = NodeRunStatus.WAITING
        enqueue(
            RUN_NODE_TASK,
            {"workspace_id": run.workspace_id, "run_id": run.id, "node_id": node.id},
            run_at=node_run.resume_at,
            idempotency_key=node_job_key(run.id, node.id, "resume"),
        )
        return None
    if now < node_run.resume_at:
        # An early duplicate delivery: the scheduled resume job is still in the ledger and will come.
        return None
    return {"resume_at": node_run.resume_at.isoformat(), "resumed_at": now.isoformat()}


def _perform_action(
    session: Session,
    run: WorkflowRun,
    node: Node,
    node_run: WorkflowNodeRun,
    enqueue: Enqueue,
    webhook_sleep: Callable[[float], None] | None,
) -> dict[str, Any]:
    kind = ActionKind(node.config["kind"])
    rendered = render_template(node.config.get("params", {}), run.trigger_payload)
    try:
        params = ACTION_PARAMS[kind].model_validate(rendered)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise BadInput(
            f"action node {node.id!r} ({kind.value}): {field}: {first['msg']} after filling the payload"
        ) from None
    if isinstance(params, WebhookParams):
        # Webhook URLs often embed a token (Slack, Zapier) and header values carry credentials: the history
        # keeps the target's origin and the header names only. The full URL stays in the map definition.
        target = url_origin(params.url)
        node_run.input = {
            **params.model_dump(mode="json", exclude={"headers", "url", "body"}),
            "target": target,
            "headers": sorted(params.headers),
        }
        body = (
            params.body
            if params.body is not None
            else {
                "workflow_id": run.workflow_id,
                "run_id": run.id,
                "node_id": node.id,
                "payload": run.trigger_payload,
            }
        )
        key = webhook_idempotency_key(run.id, node.id)
        try:
            delivery = post_webhook(
                params.url,
                body,
                idempotency_key=key,
                headers=params.headers,
                allow_private=allows_private_webhooks(session, run.workspace_id),
                timeout_seconds=params.timeout_seconds,
                max_attempts=params.max_attempts,
                **({"sleep": webhook_sleep} if webhook_sleep is not None else {}),
            )
        except (WebhookRefused, WebhookRejected) as error:
            raise BadInput(f"webhook node {node.id!r}: {error}") from None
        except WebhookUnavailable as error:
            raise Transient(f"webhook node {node.id!r}: {error}") from None
        effect = {
            "target": target,
            "status_code": delivery.status_code,
            "attempts": delivery.attempts,
            "idempotency_key": key,
        }
    else:
        node_run.input = params.model_dump(mode="json")
        effect = node_run.input
    # The node run's lock and status already make a repeat stop before this point; the unique key on
    # node_run_id is the database's own guarantee that an effect is recorded once whatever the code path.
    side_effect_id = session.execute(
        pg_insert(WorkflowSideEffect)
        .values(
            workspace_id=run.workspace_id,
            run_id=run.id,
            node_run_id=node_run.id,
            kind=SideEffectKind(kind.value),
            payload=effect,
        )
        .on_conflict_do_nothing(index_elements=[WorkflowSideEffect.node_run_id])
        .returning(WorkflowSideEffect.id)
    ).scalar_one_or_none()
    if side_effect_id is None:
        side_effect_id = session.execute(
            select(WorkflowSideEffect.id).where(WorkflowSideEffect.node_run_id == node_run.id)
        ).scalar_one()
    output: dict[str, Any] = {"side_effect_id": side_effect_id, "kind": kind.value}
    if kind is ActionKind.WEBHOOK:
        output.update(status_code=effect["status_code"], attempts=effect["attempts"])
    return output


# --- failure ---------------------------------------------------------------------------------------------


def record_node_failure(session: Session, *, workspace_id: int, run_id: int, node_id: str, reason: str) -> bool:
    """A node failed for good: mark it and its run failed, and cancel nodes that have not started.

    Runs in its own transaction after the node's own one rolled back. Returns False when there was nothing to
    mark (the node had already finished, or the run is not in this workspace).
    """
    now = utcnow()
    failed = session.execute(
        update(WorkflowNodeRun)
        .where(
            WorkflowNodeRun.run_id == run_id,
            WorkflowNodeRun.node_id == node_id,
            WorkflowNodeRun.workspace_id == workspace_id,
            WorkflowNodeRun.status.notin_(TERMINAL_NODE_STATUSES),
        )
        .values(status=NodeRunStatus.FAILED, error=reason[:2000], finished_at=now)
        .returning(WorkflowNodeRun.id)
    ).scalar_one_or_none()
    if failed is None:
        return False
    session.execute(
        update(WorkflowRun)
        .where(WorkflowRun.id == run_id, WorkflowRun.status == WorkflowRunStatus.RUNNING)
        .values(status=WorkflowRunStatus.FAILED, error=f"node {node_id!r} failed: {reason}"[:2000], finished_at=now)
    )
    session.execute(
        update(WorkflowNodeRun)
        .where(
            WorkflowNodeRun.run_id == run_id,
            WorkflowNodeRun.status.in_([NodeRunStatus.PENDING, NodeRunStatus.WAITING]),
        )
        .values(status=NodeRunStatus.CANCELLED, finished_at=now)
    )
    log.warning("run=%s node=%s event=failed", run_id, node_id)
    return True
