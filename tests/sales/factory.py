"""Builders for sales tests: reps in a workspace and activity items in the API's shape."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert

from models.core import TeamMember
from tasks.sales.ingest import ingest_activities
from tasks.sales.schemas import ActivityIn
from workers.db import session_scope

_counter = itertools.count(1)


def make_reps(workspace_id: int, count: int) -> list[int]:
    with session_scope() as s:
        return list(
            s.scalars(
                insert(TeamMember)
                .values(
                    [
                        {
                            "workspace_id": workspace_id,
                            "email": f"rep{i}-{uuid.uuid4().hex[:8]}@example.com",
                            "name": f"Rep {i}",
                        }
                        for i in range(count)
                    ]
                )
                .returning(TeamMember.id)
            )
        )


def item(
    kind: str,
    rep_id: int,
    at: datetime,
    lead: str | None = None,
    *,
    template: str | None = None,
    stage: str | None = None,
    amount_cents: int | None = None,
    activity_id: str | None = None,
    **lead_attributes: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "activity_id": activity_id or f"act-{next(_counter)}-{uuid.uuid4().hex[:6]}",
        "type": kind,
        "occurred_at": at.isoformat(),
        "rep_id": rep_id,
        "lead": {"id": lead or f"lead-{uuid.uuid4().hex[:8]}", **lead_attributes},
    }
    if template is None and kind == "email_sent":
        template = "t-default"
    if template is not None:
        body["template_id"] = template
    if stage is not None:
        body["stage"] = stage
    if amount_cents is not None:
        body["amount_cents"] = amount_cents
    return body


def ingest(workspace_id: int, items: Sequence[dict[str, Any]], now: datetime | None = None) -> int:
    """Store items through the real ingest path, in batches; returns how many were new."""
    inserted = 0
    for start in range(0, len(items), 1000):
        batch = [ActivityIn.model_validate(i) for i in items[start : start + 1000]]
        with session_scope() as s:
            inserted += ingest_activities(s, workspace_id, batch, now=now).inserted
    return inserted
