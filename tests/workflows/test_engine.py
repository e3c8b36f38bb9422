"""The engine's plain functions on the real database: paths, skips, joins, repeats, failures, snapshots."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from models.core import Job
from models.workflows import (
    NodeRunStatus,
    SideEffectKind,
    WorkflowMap,
    WorkflowNodeRun,
    WorkflowRun,
    WorkflowRunStatus,
    WorkflowSideEffect,
)
from tasks.workflows import engine
from tasks.workflows.definition import InvalidWorkflow
from tests.workflows.driver import Driver
from tests.workflows.maps import edge, email, fan_out_map, node, qualify_map
from workers.db import session_scope
from workers.errors import BadInput

LEAD = {"lead": {"id": 42, "email": "ada@example.com", "name": "Ada", "industry": "fintech"}}


def history(run_id: int) -> dict[str, WorkflowNodeRun]:
    with session_scope() as session:
        rows = session.execute(select(WorkflowNodeRun).where(WorkflowNodeRun.run_id == run_id)).scalars().all()
        session.expunge_all()
    return {row.node_id: row for row in rows}


def effects(run_id: int) -> list[WorkflowSideEffect]:
    with session_scope() as session:
        rows = (
            session.execute(
                select(WorkflowSideEffect).where(WorkflowSideEffect.run_id == run_id).order_by(WorkflowSideEffect.id)
            )
            .scalars()
            .all()
        )
        session.expunge_all()
    return list(rows)


def run_row(run_id: int) -> WorkflowRun:
    with session_scope() as session:
        run = session.get_one(WorkflowRun, run_id)
        session.expunge(run)
    return run


def statuses(run_id: int) -> dict[str, str]:
    return {node_id: row.status.value for node_id, row in history(run_id).items()}


def test_true_path_runs_and_false_path_is_skipped(workspace_id: int, save_map: Callable[..., int]) -> None:
    driver = Driver(workspace_id)
    run_id = driver.execute(save_map(qualify_map()), LEAD)
    assert driver.drain() == 5  # trigger, condition, welcome, merge, ping; task is skipped without a job

    assert statuses(run_id) == {
        "start": "succeeded",
        "is_fintech": "succeeded",
        "welcome": "succeeded",
        "task": "skipped",
        "merge": "succeeded",
        "ping": "succeeded",
    }
    nodes = history(run_id)
    assert nodes["is_fintech"].output == {"result": True, "outcome": True}
    assert nodes["merge"].output == {"arrived": 2, "taken": 1}
    assert nodes["start"].input == LEAD
    assert all(nodes[n].attempts == 1 and nodes[n].started_at and nodes[n].finished_at for n in ("start", "ping"))
    assert nodes["task"].attempts == 0 and nodes["task"].started_at is None

    sent = effects(run_id)
    assert [(e.kind, e.node_run_id) for e in sent] == [
        (SideEffectKind.SEND_EMAIL, nodes["welcome"].id),
        (SideEffectKind.NOTIFY, nodes["ping"].id),
    ]
    assert sent[0].payload == {"to": "ada@example.com", "subject": "Hello", "body": "Hi Ada", "template_id": None}
    assert sent[1].payload["message"] == "done Ada"

    run = run_row(run_id)
    assert run.status is WorkflowRunStatus.SUCCEEDED
    assert run.nodes_done == run.nodes_total == 6
    assert run.finished_at is not None


def test_false_path(workspace_id: int, save_map: Callable[..., int]) -> None:
    driver = Driver(workspace_id)
    payload = {"lead": {**LEAD["lead"], "industry": "retail"}}
    run_id = driver.execute(save_map(qualify_map()), payload)
    driver.drain()
    assert statuses(run_id)["welcome"] == "skipped"
    assert [e.kind for e in effects(run_id)] == [SideEffectKind.CREATE_TASK, SideEffectKind.NOTIFY]
    assert effects(run_id)[0].payload["title"] == "Call Ada"
    assert run_row(run_id).status is WorkflowRunStatus.SUCCEEDED


def test_a_join_whose_branches_were_all_skipped_is_skipped_and_the_run_completes(
    workspace_id: int, save_map: Callable[..., int]
) -> None:
    definition = {
        "nodes": [
            node("start", "trigger"),
            node("big", "condition", expression={">": [{"var": "deal.amount_cents"}, 1_000_000]}),
            node("fan", "branch"),
            email("a"),
            email("b"),
            node("j", "join"),
            node("after", "action", kind="notify", params={"channel": "slack", "message": "big deal"}),
            node("small", "action", kind="create_task", params={"title": "small deal"}),
        ],
        "edges": [
            edge("start", "big"),
            edge("big", "fan", when=True),
            edge("big", "small", when=False),
            edge("fan", "a"),
            edge("fan", "b"),
            edge("a", "j"),
            edge("b", "j"),
            edge("j", "after"),
        ],
    }
    driver = Driver(workspace_id)
    run_id = driver.execute(save_map(definition), {"deal": {"amount_cents": 5_000}, "lead": LEAD["lead"]})
    driver.drain()
    assert statuses(run_id) == {
        "start": "succeeded",
        "big": "succeeded",
        "fan": "skipped",
        "a": "skipped",
        "b": "skipped",
        "j": "skipped",
        "after": "skipped",
        "small": "succeeded",
    }
    assert history(run_id)["j"].arrivals == 2 and history(run_id)["j"].taken_arrivals == 0
    assert [e.kind for e in effects(run_id)] == [SideEffectKind.CREATE_TASK]
    run = run_row(run_id)
    assert run.status is WorkflowRunStatus.SUCCEEDED and run.nodes_done == 8


def test_running_a_finished_node_again_changes_nothing(workspace_id: int, save_map: Callable[..., int]) -> None:
    driver = Driver(workspace_id)
    run_id = driver.execute(save_map(qualify_map()), LEAD)
    driver.drain()
    before_effects = len(effects(run_id))
    with session_scope() as session:
        jobs_before = session.execute(select(func.count()).select_from(Job)).scalar_one()
    for node_id in ("start", "welcome", "merge", "ping", "task"):
        with session_scope() as session:
            result = engine.run_node(
                session,
                workspace_id=workspace_id,
                run_id=run_id,
                node_id=node_id,
                enqueue=driver.enqueue_for(session),
            )
        assert result["repeat"] is True
    with session_scope() as session:
        assert session.execute(select(func.count()).select_from(Job)).scalar_one() == jobs_before
    assert len(effects(run_id)) == before_effects
    assert run_row(run_id).nodes_done == 6


def test_join_after_parallel_branches_is_enqueued_exactly_once(workspace_id: int, save_map: Callable[..., int]) -> None:
    driver = Driver(workspace_id)
    run_id = driver.execute(save_map(fan_out_map(width=12, depth=1)), LEAD)
    errors = driver.drain_concurrently(threads=6)
    assert errors == []
    driver.drain()
    # Counted at the enqueue call, before the ledger's own idempotency key could hide a second one.
    assert driver.calls["merge:run"] == 1
    merge = history(run_id)["merge"]
    assert (merge.status, merge.arrivals, merge.taken_arrivals) == (NodeRunStatus.SUCCEEDED, 12, 12)
    run = run_row(run_id)
    assert run.status is WorkflowRunStatus.SUCCEEDED
    assert run.nodes_done == run.nodes_total == 16
    assert len(effects(run_id)) == 13


@pytest.mark.parametrize(
    ("definition", "reason"),
    [
        ({"nodes": [email("a")], "edges": []}, "rejected: the map has no trigger node"),
        (
            {
                "nodes": [node("start", "trigger"), node("j", "join"), email("a")],
                "edges": [edge("start", "j"), edge("j", "a"), edge("a", "j")],
            },
            "rejected: cycle:",
        ),
        (
            {
                "nodes": [node("start", "trigger"), node("x", "action", kind="fax", params={})],
                "edges": [edge("start", "x")],
            },
            "unknown action kind 'fax'",
        ),
    ],
)
def test_an_invalid_stored_map_is_rejected_before_anything_runs(
    workspace_id: int, save_map: Callable[..., int], definition: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidWorkflow):
        save_map(definition)
    workflow_id = save_map(definition, validate=False)
    driver = Driver(workspace_id)
    with pytest.raises(BadInput, match=None) as caught:
        driver.execute(workflow_id, LEAD)
    assert reason in str(caught.value)
    with session_scope() as session:
        assert session.execute(select(func.count()).where(WorkflowRun.workflow_id == workflow_id)).scalar_one() == 0
        assert session.execute(select(func.count()).where(Job.workspace_id == workspace_id)).scalar_one() == 0


def test_missing_disabled_or_foreign_maps_and_bad_payloads_are_rejected(
    workspace_id: int, save_map: Callable[..., int], make_workspace: Callable[..., int]
) -> None:
    workflow_id = save_map(qualify_map())
    with pytest.raises(BadInput, match="not found in workspace"):
        Driver(make_workspace()).execute(workflow_id, LEAD)
    with pytest.raises(BadInput, match="is disabled"):
        Driver(workspace_id).execute(save_map(qualify_map(), enabled=False, name="off"), LEAD)
    with pytest.raises(BadInput, match=r"missing lead\.email"):
        Driver(workspace_id).execute(workflow_id, {"lead": {"name": "no email"}})


def test_a_run_keeps_the_definition_it_started_with(workspace_id: int, save_map: Callable[..., int]) -> None:
    workflow_id = save_map(qualify_map())
    driver = Driver(workspace_id)
    run_id = driver.execute(workflow_id, LEAD)
    edited = qualify_map()
    edited["nodes"][2]["config"]["params"]["subject"] = "Edited"
    with session_scope() as session:
        workflow = engine.update_definition(session, session.get_one(WorkflowMap, workflow_id), edited)
        assert workflow.version == 2
    driver.drain()
    assert run_row(run_id).workflow_version == 1
    assert effects(run_id)[0].payload["subject"] == "Hello"


def test_a_failing_node_fails_the_run_and_cancels_what_has_not_run(
    workspace_id: int, save_map: Callable[..., int]
) -> None:
    definition = qualify_map()
    definition["nodes"][1]["config"]["expression"] = {">": [{"/": [{"var": "lead.id"}, {"var": "lead.zero"}]}, 1]}
    driver = Driver(workspace_id)
    run_id = driver.execute(save_map(definition), {"lead": {**LEAD["lead"], "zero": 0}})
    failures: list[Exception] = []
    while driver.step(on_error=failures.append):
        pass
    assert [str(error) for error in failures] == ["condition node 'is_fintech': division by zero"]
    nodes = history(run_id)
    assert nodes["start"].status is NodeRunStatus.SUCCEEDED
    assert nodes["is_fintech"].status is NodeRunStatus.FAILED
    assert nodes["is_fintech"].error == "condition node 'is_fintech': division by zero"
    assert nodes["is_fintech"].attempts == 1
    assert {nodes[n].status for n in ("welcome", "task", "merge", "ping")} == {NodeRunStatus.CANCELLED}
    run = run_row(run_id)
    assert run.status is WorkflowRunStatus.FAILED
    assert run.error == "node 'is_fintech' failed: condition node 'is_fintech': division by zero"
    assert effects(run_id) == []
    # A late job for a cancelled node does nothing.
    with session_scope() as session:
        result = engine.run_node(
            session, workspace_id=workspace_id, run_id=run_id, node_id="welcome", enqueue=driver.enqueue_for(session)
        )
    assert result["status"] == "cancelled"


def test_an_action_whose_template_renders_an_invalid_value_fails_with_the_field(
    workspace_id: int, save_map: Callable[..., int]
) -> None:
    definition = {
        "nodes": [node("start", "trigger"), email("mail", to="{{lead.email}}")],
        "edges": [edge("start", "mail")],
    }
    failures: list[Exception] = []
    driver = Driver(workspace_id)
    run_id = driver.execute(save_map(definition), {"lead": {"name": "no address"}})
    while driver.step(on_error=failures.append):
        pass
    assert [str(error) for error in failures] == [
        "action node 'mail' (send_email): to: Input should be a valid string after filling the payload"
    ]
    assert run_row(run_id).status is WorkflowRunStatus.FAILED
    assert effects(run_id) == []
