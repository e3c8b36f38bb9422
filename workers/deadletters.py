"""Dead letters: broker messages a worker cannot run are recorded (never their body) and set aside."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select

from models.core import Workspace
from models.operations import DeadLetter, DeadLetterReason
from workers.db import get_engine

log = logging.getLogger("artisan.deadletters")

# Header fields that repeat argument values: never stored (they may carry transcript or message text).
_REDACTED_HEADERS = frozenset({"argsrepr", "kwargsrepr"})
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class MessageFacts:
    """What a dead letter keeps of a message: identity, routing and a digest, not the body."""

    task: str | None
    task_id: str | None
    queue: str | None
    content_type: str | None
    body_bytes: int
    body_sha256: str
    headers: dict[str, Any]


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return repr(value)[:200]


def message_facts(message: Any) -> MessageFacts:
    """Read a kombu message's identity without decoding (or storing) its body."""
    raw = getattr(message, "body", b"")
    body = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "replace")
    headers = getattr(message, "headers", None)
    headers = headers if isinstance(headers, Mapping) else {}
    delivery = getattr(message, "delivery_info", None) or {}
    properties = getattr(message, "properties", None) or {}
    task = headers.get("task")
    task_id = headers.get("id") or properties.get("correlation_id")
    return MessageFacts(
        task=str(task)[:200] if task is not None else None,
        task_id=str(task_id)[:200] if task_id is not None else None,
        queue=str(delivery.get("routing_key") or delivery.get("exchange") or "")[:100] or None,
        content_type=(getattr(message, "content_type", None) or None),
        body_bytes=len(body),
        body_sha256=hashlib.sha256(body).hexdigest(),
        headers={k: _json_safe(v) for k, v in headers.items() if k not in _REDACTED_HEADERS},
    )


def record(
    reason: DeadLetterReason,
    facts: MessageFacts,
    error: str,
    *,
    worker: str | None = None,
    workspace_id: int | None = None,
) -> int | None:
    """Insert one dead letter in its own transaction; returns its id, or None when the database is unreachable.

    Never raises: the caller is the worker's consumer, which must ack the message and go on either way.
    """
    from workers.monitoring import count_dead_letter

    count_dead_letter(reason.value)
    try:
        with get_engine().begin() as conn:
            if workspace_id is not None:
                exists = conn.execute(select(Workspace.id).where(Workspace.id == workspace_id)).scalar_one_or_none()
                workspace_id = exists
            dead_letter_id = conn.execute(
                insert(DeadLetter)
                .values(
                    workspace_id=workspace_id,
                    reason=reason,
                    task=facts.task,
                    task_id=facts.task_id,
                    queue=facts.queue,
                    worker=worker,
                    error=error[:MAX_ERROR_CHARS],
                    content_type=facts.content_type,
                    body_bytes=facts.body_bytes,
                    body_sha256=facts.body_sha256,
                    headers=facts.headers,
                )
                .returning(DeadLetter.id)
            ).scalar_one()
    except Exception as exc:  # the database may be the trouble; the message is still set aside
        log.error(
            "event=dead-letter-unrecorded reason=%s task=%s task_id=%s error=%s",
            reason.value,
            facts.task,
            facts.task_id,
            type(exc).__name__,
        )
        return None
    log.warning(
        "event=dead-letter id=%d reason=%s task=%s task_id=%s queue=%s",
        dead_letter_id,
        reason.value,
        facts.task,
        facts.task_id,
        facts.queue,
    )
    return int(dead_letter_id)


def fail_ledger_row(task_id: str | None, reason: str) -> None:
    """A ledger row whose message was set aside is failed with the reason (visible in the API, replayable)."""
    if not task_id:
        return
    try:
        job_id = uuid.UUID(task_id)
    except ValueError:
        return
    from workers.jobtask import mark_failed

    try:
        mark_failed(job_id, reason)
    except Exception as exc:
        log.error("job=%s event=ledger-unavailable error=%s", job_id, type(exc).__name__)
