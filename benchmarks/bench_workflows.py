"""A 100-node workflow through the durable engine against bare Celery hops on the same broker, same run.

Two shapes of 100 nodes:
- chain: trigger -> 99 actions in a row. Every node waits for the one before, so run time / 100 is the
  per-node cost on the critical path. Baseline: a bare Celery task that publishes the next hop itself,
  100 hops (no database, no ledger, no side effect): the floor of a sequential Celery round trip.
- fan-out: trigger -> branch -> 97 parallel actions -> join. Shows the join counter under concurrent
  branch completions. Baseline: 100 bare no-ops sent at once to the same pool.

Each node of ours is a `workflows.run_node` job: argument validation, ledger claim, node-run row lock,
a side-effect row, the next nodes' ledger rows (outbox) and their publish after commit.
Knobs: BENCH_WORKFLOW_NODES (100), BENCH_WORKFLOW_REPEATS (3), BENCH_CONCURRENCY (2).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from typing import Any

import redis
from celery import Celery

from benchmarks.common import bench_environment, report

NODES = int(os.environ.get("BENCH_WORKFLOW_NODES", "100"))
REPEATS = int(os.environ.get("BENCH_WORKFLOW_REPEATS", "3"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "2"))
BARE_QUEUE = "bare_workflow_hops"

# The baseline app: the broker URL is read from the environment, which bench_environment sets before the
# worker subprocess starts (and main() re-points this process's copy once it has).
bare_hops = Celery("bare_hops", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
bare_hops.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue=BARE_QUEUE,
    worker_hijack_root_logger=False,
)


_counter_client: redis.Redis | None = None


def _counter() -> redis.Redis:
    # One connection per worker process, as a real task would keep; a new one per call would slow the baseline.
    global _counter_client
    if _counter_client is None:
        _counter_client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return _counter_client


@bare_hops.task(name="bare.hop")
def hop(run: str, remaining: int) -> None:
    if remaining > 1:
        hop.apply_async(args=[run, remaining - 1], queue=BARE_QUEUE)
    else:
        _counter().incr(f"bench:hops:{run}")


@bare_hops.task(name="bare.leaf")
def leaf(run: str) -> None:
    _counter().incr(f"bench:hops:{run}")


def _kinds() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("send_email", {"to": "{{lead.email}}", "subject": "Step", "body": "Hi {{lead.name}}"}),
        ("create_task", {"title": "Call {{lead.name}}"}),
        ("update_crm", {"object": "lead", "record_id": "{{lead.id}}", "fields": {"stage": "touched"}}),
        ("notify", {"channel": "in_app", "message": "step done"}),
    ]


def chain_map(nodes: int) -> dict[str, Any]:
    kinds = _kinds()
    definition: dict[str, Any] = {"nodes": [{"id": "start", "type": "trigger"}], "edges": []}
    previous = "start"
    for index in range(1, nodes):
        kind, params = kinds[index % len(kinds)]
        node_id = f"n{index}"
        definition["nodes"].append({"id": node_id, "type": "action", "config": {"kind": kind, "params": params}})
        definition["edges"].append({"source": previous, "target": node_id})
        previous = node_id
    return definition


def fan_out_map(nodes: int) -> dict[str, Any]:
    kinds = _kinds()
    definition: dict[str, Any] = {
        "nodes": [{"id": "start", "type": "trigger"}, {"id": "fan", "type": "branch"}, {"id": "j", "type": "join"}],
        "edges": [{"source": "start", "target": "fan"}],
    }
    for index in range(nodes - 3):
        kind, params = kinds[index % len(kinds)]
        node_id = f"p{index}"
        definition["nodes"].append({"id": node_id, "type": "action", "config": {"kind": kind, "params": params}})
        definition["edges"] += [{"source": "fan", "target": node_id}, {"source": node_id, "target": "j"}]
    return definition


def _run_workflow(workspace_id: int, workflow_id: int) -> float:
    """Seconds from publishing workflows.execute to the run's last node committed."""
    from sqlalchemy import select

    from models.workflows import WorkflowRun, WorkflowRunStatus
    from tests.support.services import wait_until
    from workers.db import session_scope
    from workers.ledger import Publishable, publish, record_job

    with session_scope() as session:
        job, _ = record_job(
            session,
            "workflows.execute",
            {"workspace_id": workspace_id, "workflow_id": workflow_id, "trigger_payload": _payload()},
            workspace_id=workspace_id,
        )
        item = Publishable(job.id, job.task, job.args)
    started = time.perf_counter()
    publish([item])

    def finished() -> bool:
        with session_scope() as session:
            status = session.execute(
                select(WorkflowRun.status).where(WorkflowRun.trigger_job_id == item.id)
            ).scalar_one_or_none()
        if status is WorkflowRunStatus.FAILED:
            raise RuntimeError("benchmark workflow run failed")
        return status is WorkflowRunStatus.SUCCEEDED

    wait_until(finished, 600, 0.01, "workflow run")
    return time.perf_counter() - started


def _payload() -> dict[str, Any]:
    return {"lead": {"id": 1, "email": "bench@example.com", "name": "Bench"}}


def _bare_chain(hops: int) -> float:
    run = uuid.uuid4().hex
    counter = redis.Redis.from_url(os.environ["REDIS_URL"])
    started = time.perf_counter()
    hop.apply_async(args=[run, hops], queue=BARE_QUEUE)
    _wait_counter(counter, run, 1)
    return time.perf_counter() - started


def _bare_fan_out(tasks: int) -> float:
    run = uuid.uuid4().hex
    counter = redis.Redis.from_url(os.environ["REDIS_URL"])
    started = time.perf_counter()
    with bare_hops.producer_or_acquire() as producer:
        for _ in range(tasks):
            leaf.apply_async(args=[run], queue=BARE_QUEUE, producer=producer)
    _wait_counter(counter, run, tasks)
    return time.perf_counter() - started


def _wait_counter(counter: redis.Redis, run: str, target: int) -> None:
    from tests.support.services import wait_until

    wait_until(lambda: int(counter.get(f"bench:hops:{run}") or 0) >= target, 600, 0.001, "bare hops")


def _median(measure: Any, repeats: int) -> float:
    measure()  # warm-up: imports, connections, the first pool process's engine
    return statistics.median(measure() for _ in range(repeats))


def main() -> None:
    from tests.support.services import WorkerProcess

    with bench_environment("workflows"):
        from sqlalchemy import insert

        from models.core import Workspace
        from tasks.workflows import engine
        from workers.db import session_scope

        bare_hops.conf.broker_url = os.environ["REDIS_URL"]
        with session_scope() as session:
            workspace_id = session.execute(
                insert(Workspace).values(name=f"bench-{uuid.uuid4().hex[:8]}").returning(Workspace.id)
            ).scalar_one()
            chain_id = engine.create_map(session, workspace_id, "bench chain", chain_map(NODES)).id
            fan_id = engine.create_map(session, workspace_id, "bench fan-out", fan_out_map(NODES)).id

        with WorkerProcess(queues=["default"], concurrency=CONCURRENCY, name="bench-workflows"):
            chain_seconds = _median(lambda: _run_workflow(workspace_id, chain_id), REPEATS)
            fan_seconds = _median(lambda: _run_workflow(workspace_id, fan_id), REPEATS)
        with WorkerProcess(
            queues=[BARE_QUEUE],
            concurrency=CONCURRENCY,
            name="bench-workflows-bare",
            app="benchmarks.bench_workflows:bare_hops",
        ):
            bare_chain_seconds = _median(lambda: _bare_chain(NODES), REPEATS)
            bare_fan_seconds = _median(lambda: _bare_fan_out(NODES), REPEATS)

    setup = f"{NODES} nodes, median of {REPEATS} runs, prefork -c {CONCURRENCY}, one worker each"
    report(
        "workflows-chain",
        setup + "; run time of a sequential chain",
        ours=("chain workflow, workflows.run_node per node", chain_seconds * 1000, "ms"),
        bare=(f"{NODES} bare Celery hops, each publishing the next", bare_chain_seconds * 1000, "ms"),
        higher_is_better=False,
    )
    per_node_ms = chain_seconds * 1000 / NODES
    per_hop_ms = bare_chain_seconds * 1000 / NODES
    print(
        f"  per node: {per_node_ms:.2f} ms ours, {per_hop_ms:.2f} ms bare hop, "
        f"overhead {per_node_ms - per_hop_ms:.2f} ms per node"
    )
    report(
        "workflows-fanout",
        setup + "; run time of branch -> parallel actions -> join",
        ours=("fan-out workflow with a join", fan_seconds * 1000, "ms"),
        bare=(f"{NODES} bare Celery no-ops sent at once", bare_fan_seconds * 1000, "ms"),
        higher_is_better=False,
    )


if __name__ == "__main__":
    main()
    sys.exit(0)
