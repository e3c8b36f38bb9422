"""Workflow map definitions the workflow tests share."""

from __future__ import annotations

from typing import Any


def node(node_id: str, node_type: str, **config: Any) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, "config": config}


def email(node_id: str, to: str = "{{lead.email}}", subject: str = "Hello") -> dict[str, Any]:
    return node(node_id, "action", kind="send_email", params={"to": to, "subject": subject, "body": "Hi {{lead.name}}"})


def edge(source: str, target: str, when: bool | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {"source": source, "target": target}
    if when is not None:
        raw["when"] = when
    return raw


def qualify_map() -> dict[str, Any]:
    """trigger -> condition(fintech?) -> yes: email ; no: create_task; both -> join -> notify."""
    return {
        "nodes": [
            node("start", "trigger", required=["lead.email"]),
            node("is_fintech", "condition", expression={"==": [{"var": "lead.industry"}, "fintech"]}),
            email("welcome"),
            node("task", "action", kind="create_task", params={"title": "Call {{lead.name}}"}),
            node("merge", "join"),
            node("ping", "action", kind="notify", params={"channel": "in_app", "message": "done {{lead.name}}"}),
        ],
        "edges": [
            edge("start", "is_fintech"),
            edge("is_fintech", "welcome", when=True),
            edge("is_fintech", "task", when=False),
            edge("welcome", "merge"),
            edge("task", "merge"),
            edge("merge", "ping"),
        ],
    }


def fan_out_map(width: int, depth: int = 1) -> dict[str, Any]:
    """trigger -> branch -> `width` parallel chains of `depth` actions -> join -> notify."""
    nodes = [node("start", "trigger"), node("fan", "branch"), node("merge", "join")]
    edges = [edge("start", "fan")]
    kinds = ["send_email", "create_task", "update_crm", "notify"]
    for lane in range(width):
        previous = "fan"
        for step in range(depth):
            node_id = f"lane{lane}_{step}"
            kind = kinds[(lane + step) % len(kinds)]
            nodes.append(node(node_id, "action", kind=kind, params=_params(kind, node_id)))
            edges.append(edge(previous, node_id))
            previous = node_id
        edges.append(edge(previous, "merge"))
    nodes.append(node("done", "action", kind="notify", params={"channel": "in_app", "message": "all lanes done"}))
    edges.append(edge("merge", "done"))
    return {"nodes": nodes, "edges": edges}


def _params(kind: str, node_id: str) -> dict[str, Any]:
    if kind == "send_email":
        return {"to": "{{lead.email}}", "subject": f"step {node_id}", "body": "Hi"}
    if kind == "create_task":
        return {"title": f"task {node_id}"}
    if kind == "update_crm":
        return {"object": "lead", "record_id": "{{lead.id}}", "fields": {"last_step": node_id}}
    return {"channel": "in_app", "message": f"reached {node_id}"}
