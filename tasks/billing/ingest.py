"""Batch ingest of usage events: validated per event, stored in bulk, idempotent on `event_id`.

One bad event does not sink the batch: it is reported by its index and reason while the valid ones are stored.
A repeated `event_id` (within the batch or already stored) counts once and is reported as a duplicate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy import text
from sqlalchemy.orm import Session

from models.core import Metric
from workers.settings import get_settings

MAX_BATCH_EVENTS = 10_000
# usage_events.quantity is a bigint; cap well below it so sums over a period cannot overflow.
MAX_QUANTITY = 10**12


class UsageEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # No U+0000: PostgreSQL text cannot hold it, and left to the INSERT it would fail the whole batch.
    event_id: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")
    subscription_id: int = Field(gt=0)
    metric: Metric
    quantity: int = Field(gt=0, le=MAX_QUANTITY)
    occurred_at: AwareDatetime


class UsageBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[UsageEventIn] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class BatchShapeError(ValueError):
    """The request as a whole is malformed (not JSON, no `events` list, too many events): nothing is stored."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


@dataclass
class Rejection:
    index: int
    reason: str


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: list[int] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": len(self.duplicates),
            "duplicate_indexes": self.duplicates,
            "rejected": [{"index": r.index, "reason": r.reason} for r in self.rejected],
        }


_event_adapter = TypeAdapter(UsageEventIn)
_envelope_adapter = TypeAdapter(dict[str, list[Any]])


def _reason(error: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in error.get("loc", ())) or "event"
    return f"{where}: {error.get('msg', 'invalid')}"


def parse_batch_json(body: bytes) -> tuple[list[UsageEventIn | None], dict[int, str]]:
    """Parse a request body: the fast path validates the whole batch in one call (in Rust); only when some
    events are invalid is the batch walked event by event to keep the valid ones and name the bad ones."""
    try:
        batch = UsageBatchIn.model_validate_json(body)
        return list(batch.events), {}
    except ValidationError as exc:
        shape_errors = [
            e for e in exc.errors() if len(e["loc"]) < 2 or e["loc"][0] != "events" or not isinstance(e["loc"][1], int)
        ]
        if shape_errors:
            raise BatchShapeError(
                [{"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]} for e in shape_errors]
            ) from exc
    raw = _envelope_adapter.validate_python(json.loads(body))
    return parse_events(raw["events"])


def parse_events(raw_events: list[Any]) -> tuple[list[UsageEventIn | None], dict[int, str]]:
    """Validate each event on its own: (parsed or None per index, reason per rejected index)."""
    if len(raw_events) > MAX_BATCH_EVENTS:
        raise BatchShapeError([{"field": "events", "message": f"at most {MAX_BATCH_EVENTS} events per batch"}])
    parsed: list[UsageEventIn | None] = []
    reasons: dict[int, str] = {}
    for index, raw in enumerate(raw_events):
        try:
            parsed.append(_event_adapter.validate_python(raw))
        except ValidationError as exc:
            parsed.append(None)
            reasons[index] = "; ".join(_reason(e) for e in exc.errors())
    return parsed, reasons


INSERT_EVENTS = text(
    """
    INSERT INTO usage_events (event_id, workspace_id, subscription_id, metric, quantity, occurred_at)
    SELECT e.event_id, :workspace_id, e.subscription_id, e.metric::usage_metric, e.quantity, e.occurred_at
    FROM unnest(CAST(:event_ids AS text[]), CAST(:subscription_ids AS bigint[]), CAST(:metrics AS text[]),
                CAST(:quantities AS bigint[]), CAST(:occurred_ats AS timestamptz[]))
         AS e(event_id, subscription_id, metric, quantity, occurred_at)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
    """
)


# event_id is unique across the platform (usage_events' unique key): an id another workspace already used cannot be
# stored for this one. Such an event must not be reported as a duplicate (a producer treats that as "counted" and
# drops it); it is rejected, saying nothing about the other event.
EVENT_ID_TAKEN = "event_id: already used outside this workspace (event ids are unique across the platform: use a UUID)"

# The ids ON CONFLICT skipped that belong to another workspace. A separate statement on purpose: under READ
# COMMITTED it sees the rows a concurrent insert committed while ours waited on the conflict.
TAKEN_ELSEWHERE = text(
    "SELECT event_id FROM usage_events WHERE event_id = ANY(CAST(:event_ids AS text[])) AND workspace_id <> :ws"
)


def _taken_elsewhere(session: Session, workspace_id: int, event_ids: list[str]) -> set[str]:
    if not event_ids:
        return set()
    return set(session.execute(TAKEN_ELSEWHERE, {"event_ids": event_ids, "ws": workspace_id}).scalars())


def store_events(
    session: Session,
    workspace_id: int,
    events: list[UsageEventIn | None],
    reasons: dict[int, str],
    *,
    now: datetime | None = None,
) -> IngestResult:
    """Check ownership and clock, then insert the valid events in one statement (ON CONFLICT DO NOTHING)."""
    now = now or datetime.now(UTC)
    latest_allowed = now + timedelta(seconds=get_settings().billing_max_future_seconds)
    rejected = dict(reasons)

    wanted = {e.subscription_id for e in events if e is not None}
    started: dict[int, datetime] = {}
    if wanted:
        rows = session.execute(
            text("SELECT id, started_at FROM subscriptions WHERE workspace_id = :ws AND id = ANY(:ids)"),
            {"ws": workspace_id, "ids": list(wanted)},
        )
        started = {row.id: row.started_at for row in rows}

    first_index: dict[str, int] = {}
    repeats: list[tuple[int, str]] = []
    keep: list[tuple[int, UsageEventIn]] = []
    for index, event in enumerate(events):
        if event is None:
            continue
        subscription_started = started.get(event.subscription_id)
        if subscription_started is None:
            # Another workspace's subscription looks exactly like a missing one: nothing leaks across tenants.
            rejected[index] = "subscription_id: no such subscription in this workspace"
        elif event.occurred_at > latest_allowed:
            rejected[index] = "occurred_at: more than 5 minutes in the future"
        elif event.occurred_at < subscription_started:
            rejected[index] = "occurred_at: before the subscription started"
        elif event.event_id in first_index:
            repeats.append((index, event.event_id))
        else:
            first_index[event.event_id] = index
            keep.append((index, event))

    inserted: set[str] = set()
    if keep:
        inserted = set(
            session.execute(
                INSERT_EVENTS,
                {
                    "workspace_id": workspace_id,
                    "event_ids": [e.event_id for _, e in keep],
                    "subscription_ids": [e.subscription_id for _, e in keep],
                    "metrics": [e.metric.value for _, e in keep],
                    "quantities": [e.quantity for _, e in keep],
                    "occurred_ats": [e.occurred_at for _, e in keep],
                },
            ).scalars()
        )
    not_inserted = [(index, e.event_id) for index, e in keep if e.event_id not in inserted]
    foreign = _taken_elsewhere(session, workspace_id, [event_id for _, event_id in not_inserted])
    duplicates: list[int] = []
    for index, event_id in [*not_inserted, *repeats]:
        if event_id in foreign:
            rejected[index] = EVENT_ID_TAKEN
        else:
            duplicates.append(index)
    return IngestResult(
        accepted=len(inserted),
        duplicates=sorted(duplicates),
        rejected=[Rejection(i, rejected[i]) for i in sorted(rejected)],
    )


def ingest_events(
    session: Session, workspace_id: int, raw_events: list[Any], *, now: datetime | None = None
) -> IngestResult:
    """The `billing.ingest_usage` path: raw dicts from a `send_task` producer."""
    events, reasons = parse_events(raw_events)
    return store_events(session, workspace_id, events, reasons, now=now)
