"""Map validation: every rule rejects with a reason, and valid maps parse into a runnable graph."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tasks.workflows.definition import InvalidWorkflow, check_trigger_payload, validate_definition, wait_seconds
from tests.workflows.maps import edge, email, fan_out_map, node, qualify_map


def reason(definition: Any) -> str:
    with pytest.raises(InvalidWorkflow) as caught:
        validate_definition(definition)
    return str(caught.value)


def test_valid_map_parses_with_topological_order_and_condition_edges() -> None:
    graph = validate_definition(qualify_map())
    assert graph.trigger == "start"
    assert graph.order[0] == "start" and graph.order[-1] == "ping"
    assert graph.order.index("merge") > max(graph.order.index("welcome"), graph.order.index("task"))
    assert graph.successors("is_fintech", True) == (["welcome"], ["task"])
    assert graph.successors("is_fintech", False) == (["task"], ["welcome"])
    assert [e.source for e in graph.incoming["merge"]] == ["welcome", "task"]


def test_fan_out_map_of_twenty_nodes_is_valid() -> None:
    graph = validate_definition(fan_out_map(width=4, depth=4))
    assert len(graph.nodes) == 20


def test_canvas_only_keys_are_ignored() -> None:
    definition = qualify_map()
    definition["nodes"][0]["position"] = {"x": 10, "y": 20}
    definition["viewport"] = {"zoom": 1}
    validate_definition(definition)


def test_cycle_is_rejected() -> None:
    definition = {
        "nodes": [node("start", "trigger"), email("a"), email("b"), node("m", "join")],
        "edges": [edge("start", "m"), edge("m", "a"), edge("a", "b"), edge("b", "m")],
    }
    assert reason(definition).startswith("cycle:")
    assert "'a'" in reason(definition) and "'m'" in reason(definition)


def test_self_loop_is_rejected() -> None:
    definition = {"nodes": [node("start", "trigger"), email("a")], "edges": [edge("start", "a"), edge("a", "a")]}
    assert reason(definition) == "cycle: node 'a' has an edge to itself"


def test_missing_trigger_is_rejected() -> None:
    assert reason({"nodes": [email("a")], "edges": []}) == "the map has no trigger node"


def test_two_triggers_are_rejected() -> None:
    definition = {"nodes": [node("t1", "trigger"), node("t2", "trigger")], "edges": []}
    assert "exactly one" in reason(definition)


def test_bad_condition_is_rejected() -> None:
    definition = qualify_map()
    definition["nodes"][1]["config"]["expression"] = {"==": [{"var": "lead.industry"}, {"exec": "rm -rf /"}]}
    assert reason(definition) == "condition node 'is_fintech': unknown operator 'exec' at $.==[1]"


def test_condition_without_expression_is_rejected() -> None:
    definition = qualify_map()
    definition["nodes"][1]["config"] = {}
    assert reason(definition) == "condition node 'is_fintech': missing 'expression'"


def test_unknown_action_is_rejected() -> None:
    definition = qualify_map()
    definition["nodes"][3]["config"]["kind"] = "launch_rocket"
    assert reason(definition).startswith("action node 'task': unknown action kind 'launch_rocket'")


def test_bad_action_params_are_rejected() -> None:
    definition = qualify_map()
    definition["nodes"][2]["config"]["params"] = {"subject": "no recipient"}
    assert reason(definition) == "action node 'welcome' (send_email): to: Field required"


def test_unknown_node_type_is_rejected() -> None:
    definition = qualify_map()
    definition["nodes"][4]["type"] = "loop"
    assert "unknown node type 'loop'" in reason(definition)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://example.com/x", "must be an absolute http:// or https:// URL"),
        ("https://user:secret@example.com/hook", "must not contain credentials"),
    ],
)
def test_bad_webhook_urls_are_rejected(url: str, expected: str) -> None:
    definition = {
        "nodes": [node("start", "trigger"), node("hook", "action", kind="webhook", params={"url": url})],
        "edges": [edge("start", "hook")],
    }
    assert expected in reason(definition)


def test_webhook_cannot_override_idempotency_header() -> None:
    params = {"url": "https://example.com/h", "headers": {"Idempotency-Key": "mine"}}
    definition = {
        "nodes": [node("start", "trigger"), node("hook", "action", kind="webhook", params=params)],
        "edges": [edge("start", "hook")],
    }
    assert "cannot be overridden: Idempotency-Key" in reason(definition)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["edges"].append(edge("start", "ghost")), "target 'ghost' is not a node of this map"),
        (lambda d: d["edges"].append(edge("start", "is_fintech")), "duplicate edge 'start' -> 'is_fintech'"),
        (lambda d: d["edges"].__setitem__(3, edge("welcome", "task")), "node 'task' has 2 incoming edges; merge them"),
        (lambda d: d["edges"].__setitem__(1, edge("is_fintech", "welcome")), "needs 'when': true or false"),
        (lambda d: d["edges"].__setitem__(0, edge("start", "is_fintech", when=True)), "only edges leaving a cond"),
        (lambda d: d["edges"].__setitem__(2, edge("is_fintech", "task", when=True)), "more than one edge for the"),
        (lambda d: d["edges"].append(edge("merge", "welcome")), "cycle:"),
        (lambda d: d["nodes"].append(node("start", "branch")), "duplicate node id 'start'"),
        (lambda d: d["nodes"].append(node("lonely", "wait", seconds=5)), "node 'lonely' cannot be reached"),
        (lambda d: d["nodes"].append(node("bad id!", "branch")), "'id' must be 1-64 characters"),
        (lambda d: d["nodes"][4].__setitem__("config", {"x": 1}), "join node 'merge' takes no config"),
        (lambda d: d["nodes"][0]["config"].__setitem__("required", "lead"), "'required' must be a list"),
    ],
)
def test_graph_rules(mutate: Any, expected: str) -> None:
    definition = qualify_map()
    mutate(definition)
    assert expected in reason(definition)


def test_join_and_branch_arity() -> None:
    single_join = {
        "nodes": [node("start", "trigger"), node("m", "join")],
        "edges": [edge("start", "m")],
    }
    assert reason(single_join) == "join node 'm' needs at least two incoming edges, has 1"
    thin_branch = {
        "nodes": [node("start", "trigger"), node("b", "branch"), email("a")],
        "edges": [edge("start", "b"), edge("b", "a")],
    }
    assert reason(thin_branch) == "branch node 'b' needs at least two outgoing edges, has 1"
    fan_without_branch = {
        "nodes": [node("start", "trigger"), email("a"), email("b")],
        "edges": [edge("start", "a"), edge("start", "b")],
    }
    assert "fan out with a branch" in reason(fan_without_branch)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, "needs a positive duration"),
        ({"seconds": -1}, "seconds must be a non-negative number"),
        ({"hours": True}, "hours must be a non-negative number"),
        ({"weeks": 1}, "unknown setting 'weeks'"),
        ({"days": 400}, "longer than 365 days"),
    ],
)
def test_wait_config(config: dict[str, Any], expected: str) -> None:
    definition = {"nodes": [node("start", "trigger"), node("w", "wait", **config)], "edges": [edge("start", "w")]}
    assert expected in reason(definition)


def test_wait_duration_sums_units() -> None:
    definition = {
        "nodes": [node("start", "trigger"), node("w", "wait", days=1, hours=2, minutes=3, seconds=4)],
        "edges": [edge("start", "w")],
    }
    assert wait_seconds(validate_definition(definition).nodes["w"]) == 86400 + 7200 + 180 + 4


@pytest.mark.parametrize("definition", [None, [], {"nodes": []}, {"nodes": "x"}, {"nodes": [1]}])
def test_malformed_documents(definition: Any) -> None:
    assert reason(definition)


def test_size_is_bounded() -> None:
    nodes = [node("start", "trigger")] + [email(f"n{i}") for i in range(600)]
    assert "at most 500" in reason({"nodes": nodes, "edges": []})


def test_trigger_required_paths() -> None:
    graph = validate_definition(qualify_map())
    check_trigger_payload(graph, {"lead": {"email": "a@b.c"}})
    with pytest.raises(InvalidWorkflow, match=r"missing lead\.email"):
        check_trigger_payload(graph, {"lead": {"email": ""}})
    with pytest.raises(InvalidWorkflow, match="JSON object"):
        check_trigger_payload(graph, ["not", "an", "object"])


def test_validation_does_not_mutate_the_definition() -> None:
    definition = qualify_map()
    before = copy.deepcopy(definition)
    validate_definition(definition)
    assert definition == before
