"""Workflow map definitions: parse and validate the nodes+edges JSON the canvas saves.

A definition is ``{"nodes": [{"id", "type", "config"?}], "edges": [{"source", "target", "when"?}]}``
(the shape React Flow style canvases save). ``validate_definition`` either returns a ``WorkflowGraph``
ready to run or raises ``InvalidWorkflow`` with one human-readable reason; it never touches the database,
so a map is rejected before any run or node run row exists.

Graph rules, and why:
- exactly one ``trigger``, with no incoming edges: a run has one entry point;
- every node reachable from the trigger: an unreachable node would keep a run from ever completing;
- no cycles: a run must terminate, and each node runs at most once per run (its node run is unique);
- only ``join`` nodes take more than one incoming edge, and a join takes at least two: merging is explicit,
  so "run when all branches arrived" is never ambiguous;
- only ``branch`` (parallel fan-out, two or more edges) and ``condition`` (one ``when: true`` and/or one
  ``when: false`` edge) have more than one outgoing edge; other nodes continue along at most one edge.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from models.workflows import SideEffectKind, WorkflowNodeType
from tasks.workflows.expressions import InvalidExpression, lookup, validate_expression

MAX_NODES = 500
MAX_EDGES = 2_000
MAX_WAIT_SECONDS = 365 * 24 * 3600
# Node ids go into ledger idempotency keys and log lines: keep them short and plain.
_NODE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class InvalidWorkflow(ValueError):
    """The map cannot run; ``str(error)`` is the reason shown to the user."""


# The node and action vocabularies are the database enums, so a kind the validator accepts can always be stored.
NodeType = WorkflowNodeType
ActionKind = SideEffectKind


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Parameters may contain "{{ path }}" placeholders filled from the trigger payload at run time, so ids that
# are numbers in the CRM are accepted as either a number or a template string.
TemplatedId = str | int


class SendEmailParams(_Params):
    to: Annotated[str, Field(min_length=1, max_length=320)]
    subject: Annotated[str, Field(min_length=1, max_length=998)]
    body: Annotated[str, Field(max_length=100_000)] = ""
    template_id: TemplatedId | None = None


class CreateTaskParams(_Params):
    title: Annotated[str, Field(min_length=1, max_length=500)]
    notes: Annotated[str, Field(max_length=10_000)] = ""
    assignee: TemplatedId | None = None
    due_in_days: Annotated[int, Field(ge=0, le=3650)] | None = None


class UpdateCrmParams(_Params):
    object: Annotated[str, Field(pattern=r"^(lead|contact|deal|account)$")]
    record_id: TemplatedId
    fields: Annotated[dict[str, Any], Field(min_length=1)]


class NotifyParams(_Params):
    channel: Annotated[str, Field(pattern=r"^(in_app|email|slack|sms)$")]
    message: Annotated[str, Field(min_length=1, max_length=10_000)]
    recipients: list[TemplatedId] = []


class WebhookParams(_Params):
    url: Annotated[str, Field(min_length=1, max_length=2_048)]
    body: Any = None
    headers: dict[str, str] = {}
    timeout_seconds: Annotated[float, Field(gt=0, le=30)] = 10.0
    max_attempts: Annotated[int, Field(ge=1, le=5)] = 3

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        if parts.username or parts.password:
            # Credentials in a URL end up in logs and history rows; use headers instead.
            raise ValueError("must not contain credentials")
        return url

    @field_validator("headers")
    @classmethod
    def _no_reserved_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        reserved = {"host", "idempotency-key", "content-length", "transfer-encoding"}
        clash = sorted(name for name in headers if name.lower() in reserved)
        if clash:
            raise ValueError(f"headers set by the engine cannot be overridden: {', '.join(clash)}")
        return headers


ACTION_PARAMS: dict[ActionKind, type[_Params]] = {
    ActionKind.SEND_EMAIL: SendEmailParams,
    ActionKind.CREATE_TASK: CreateTaskParams,
    ActionKind.UPDATE_CRM: UpdateCrmParams,
    ActionKind.NOTIFY: NotifyParams,
    ActionKind.WEBHOOK: WebhookParams,
}


@dataclass(frozen=True)
class Node:
    id: str
    type: NodeType
    config: dict[str, Any]


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    # Only on edges leaving a condition: the outcome that takes this edge.
    when: bool | None = None


@dataclass(frozen=True)
class WorkflowGraph:
    nodes: dict[str, Node]
    edges: tuple[Edge, ...]
    trigger: str
    outgoing: dict[str, tuple[Edge, ...]]
    incoming: dict[str, tuple[Edge, ...]]
    # A topological order; used to report and to test, the engine itself follows edges.
    order: tuple[str, ...]

    def successors(self, node_id: str, outcome: bool | None = None) -> tuple[list[str], list[str]]:
        """(taken, not taken) targets of a node; ``outcome`` is a condition's result."""
        taken: list[str] = []
        skipped: list[str] = []
        for edge in self.outgoing[node_id]:
            if edge.when is None or edge.when == outcome:
                taken.append(edge.target)
            else:
                skipped.append(edge.target)
        return taken, skipped


def _fail(reason: str) -> InvalidWorkflow:
    return InvalidWorkflow(reason)


def _pydantic_reason(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "params"
    return f"{location}: {first['msg']}"


def _wait_seconds(node_id: str, config: Mapping[str, Any]) -> float:
    units = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
    unknown = sorted(set(config) - set(units))
    if unknown:
        raise _fail(f"wait node {node_id!r}: unknown setting {unknown[0]!r} (use seconds, minutes, hours, days)")
    total = 0.0
    for unit, factor in units.items():
        amount = config.get(unit, 0)
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
            raise _fail(f"wait node {node_id!r}: {unit} must be a non-negative number")
        total += amount * factor
    if total <= 0:
        raise _fail(f"wait node {node_id!r}: needs a positive duration (seconds, minutes, hours or days)")
    if total > MAX_WAIT_SECONDS:
        raise _fail(f"wait node {node_id!r}: waits longer than 365 days are not supported")
    return total


def wait_seconds(node: Node) -> float:
    """The duration of a validated wait node."""
    return _wait_seconds(node.id, node.config)


def action_params(node: Node) -> _Params:
    """The parsed parameters of a validated action node (placeholders not yet filled)."""
    kind = ActionKind(node.config["kind"])
    return ACTION_PARAMS[kind].model_validate(node.config.get("params", {}))


def _check_node_config(node: Node) -> None:
    config = node.config
    if node.type is NodeType.TRIGGER:
        required = config.get("required", [])
        unknown = sorted(set(config) - {"required"})
        if unknown:
            raise _fail(f"trigger node {node.id!r}: unknown setting {unknown[0]!r}")
        if not isinstance(required, list) or not all(isinstance(path, str) and path for path in required):
            raise _fail(f"trigger node {node.id!r}: 'required' must be a list of payload paths")
    elif node.type is NodeType.CONDITION:
        if "expression" not in config:
            raise _fail(f"condition node {node.id!r}: missing 'expression'")
        try:
            validate_expression(config["expression"])
        except InvalidExpression as error:
            raise _fail(f"condition node {node.id!r}: {error}") from None
    elif node.type is NodeType.ACTION:
        kind = config.get("kind")
        if kind not in ActionKind.__members__.values():
            known = ", ".join(kind.value for kind in ActionKind)
            raise _fail(f"action node {node.id!r}: unknown action kind {kind!r} (known: {known})")
        params = config.get("params", {})
        if not isinstance(params, dict):
            raise _fail(f"action node {node.id!r}: 'params' must be an object")
        try:
            ACTION_PARAMS[ActionKind(kind)].model_validate(params)
        except ValidationError as error:
            raise _fail(f"action node {node.id!r} ({kind}): {_pydantic_reason(error)}") from None
    elif node.type is NodeType.WAIT:
        _wait_seconds(node.id, config)
    elif config:
        raise _fail(f"{node.type.value} node {node.id!r} takes no config")


def _parse_nodes(raw_nodes: Any) -> dict[str, Node]:
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise _fail("the map needs a non-empty 'nodes' list")
    if len(raw_nodes) > MAX_NODES:
        raise _fail(f"the map has {len(raw_nodes)} nodes; at most {MAX_NODES} are allowed")
    nodes: dict[str, Node] = {}
    for index, raw in enumerate(raw_nodes):
        if not isinstance(raw, dict):
            raise _fail(f"nodes[{index}] must be an object")
        node_id = raw.get("id")
        if not isinstance(node_id, str) or not _NODE_ID.match(node_id):
            raise _fail(f"nodes[{index}]: 'id' must be 1-64 characters of letters, digits, '_', '.', ':' or '-'")
        if node_id in nodes:
            raise _fail(f"duplicate node id {node_id!r}")
        raw_type = raw.get("type")
        if raw_type not in NodeType.__members__.values():
            known = ", ".join(node_type.value for node_type in NodeType)
            raise _fail(f"node {node_id!r}: unknown node type {raw_type!r} (known: {known})")
        config = raw.get("config") or {}
        if not isinstance(config, dict):
            raise _fail(f"node {node_id!r}: 'config' must be an object")
        # Canvas-only keys (position, label, data for the UI) are allowed and ignored.
        nodes[node_id] = Node(id=node_id, type=NodeType(raw_type), config=config)
    return nodes


def _parse_edges(raw_edges: Any, nodes: Mapping[str, Node]) -> tuple[Edge, ...]:
    if raw_edges is None:
        raw_edges = []
    if not isinstance(raw_edges, list):
        raise _fail("'edges' must be a list")
    if len(raw_edges) > MAX_EDGES:
        raise _fail(f"the map has {len(raw_edges)} edges; at most {MAX_EDGES} are allowed")
    edges: list[Edge] = []
    seen: set[tuple[str, str]] = set()
    for index, raw in enumerate(raw_edges):
        if not isinstance(raw, dict):
            raise _fail(f"edges[{index}] must be an object")
        source, target = raw.get("source"), raw.get("target")
        for end, value in (("source", source), ("target", target)):
            if not isinstance(value, str) or value not in nodes:
                raise _fail(f"edges[{index}]: {end} {value!r} is not a node of this map")
        if source == target:
            raise _fail(f"cycle: node {source!r} has an edge to itself")
        if (source, target) in seen:
            raise _fail(f"duplicate edge {source!r} -> {target!r}")
        seen.add((source, target))
        when = raw.get("when")
        if nodes[source].type is NodeType.CONDITION:
            if not isinstance(when, bool):
                raise _fail(f"edge {source!r} -> {target!r} leaves a condition and needs 'when': true or false")
        elif when is not None:
            raise _fail(f"edge {source!r} -> {target!r}: only edges leaving a condition take 'when'")
        edges.append(Edge(source=source, target=target, when=when))
    return tuple(edges)


def _topological_order(nodes: Mapping[str, Node], outgoing: Mapping[str, tuple[Edge, ...]]) -> tuple[str, ...]:
    in_degree = {node_id: 0 for node_id in nodes}
    for edges in outgoing.values():
        for edge in edges:
            in_degree[edge.target] += 1
    ready = deque(node_id for node_id, degree in in_degree.items() if degree == 0)
    order: list[str] = []
    while ready:
        node_id = ready.popleft()
        order.append(node_id)
        for edge in outgoing[node_id]:
            in_degree[edge.target] -= 1
            if in_degree[edge.target] == 0:
                ready.append(edge.target)
    if len(order) < len(nodes):
        stuck = sorted(node_id for node_id, degree in in_degree.items() if degree > 0)
        raise _fail(f"cycle: the map loops through {', '.join(repr(node_id) for node_id in stuck[:10])}")
    return tuple(order)


def validate_definition(definition: Any) -> WorkflowGraph:
    """Parse and check a map; raise ``InvalidWorkflow`` with the first problem found."""
    if not isinstance(definition, dict):
        raise _fail("the definition must be an object with 'nodes' and 'edges'")
    nodes = _parse_nodes(definition.get("nodes"))
    edges = _parse_edges(definition.get("edges"), nodes)

    outgoing: dict[str, list[Edge]] = {node_id: [] for node_id in nodes}
    incoming: dict[str, list[Edge]] = {node_id: [] for node_id in nodes}
    for edge in edges:
        outgoing[edge.source].append(edge)
        incoming[edge.target].append(edge)

    triggers = [node.id for node in nodes.values() if node.type is NodeType.TRIGGER]
    if not triggers:
        raise _fail("the map has no trigger node")
    if len(triggers) > 1:
        raise _fail(f"the map has {len(triggers)} trigger nodes ({', '.join(map(repr, triggers))}); exactly one")
    trigger = triggers[0]
    if incoming[trigger]:
        raise _fail(f"trigger node {trigger!r} cannot have incoming edges")

    order = _topological_order(nodes, {key: tuple(value) for key, value in outgoing.items()})

    for node in nodes.values():
        _check_node_config(node)
        ins, outs = incoming[node.id], outgoing[node.id]
        if node.type is NodeType.JOIN:
            if len(ins) < 2:
                raise _fail(f"join node {node.id!r} needs at least two incoming edges, has {len(ins)}")
        elif len(ins) > 1:
            raise _fail(f"{node.type.value} node {node.id!r} has {len(ins)} incoming edges; merge them with a join")
        if node.type is NodeType.BRANCH:
            if len(outs) < 2:
                raise _fail(f"branch node {node.id!r} needs at least two outgoing edges, has {len(outs)}")
        elif node.type is NodeType.CONDITION:
            outcomes = [edge.when for edge in outs]
            if not outs:
                raise _fail(f"condition node {node.id!r} has no outgoing edge")
            if len(outcomes) != len(set(outcomes)):
                raise _fail(f"condition node {node.id!r} has more than one edge for the same outcome; use a branch")
        elif len(outs) > 1:
            raise _fail(f"{node.type.value} node {node.id!r} has {len(outs)} outgoing edges; fan out with a branch")

    reachable = {trigger}
    frontier = [trigger]
    while frontier:
        for edge in outgoing[frontier.pop()]:
            if edge.target not in reachable:
                reachable.add(edge.target)
                frontier.append(edge.target)
    unreachable = [node_id for node_id in order if node_id not in reachable]
    if unreachable:
        raise _fail(f"node {unreachable[0]!r} cannot be reached from the trigger")

    return WorkflowGraph(
        nodes=nodes,
        edges=edges,
        trigger=trigger,
        outgoing={key: tuple(value) for key, value in outgoing.items()},
        incoming={key: tuple(value) for key, value in incoming.items()},
        order=order,
    )


def check_trigger_payload(graph: WorkflowGraph, payload: Any) -> None:
    """Reject a payload missing a path the trigger declares as required."""
    if not isinstance(payload, dict):
        raise _fail("the trigger payload must be a JSON object")
    missing = [
        path for path in graph.nodes[graph.trigger].config.get("required", []) if lookup(payload, path) in (None, "")
    ]
    if missing:
        raise _fail(f"the trigger payload is missing {', '.join(missing)}")
