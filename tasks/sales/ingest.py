"""Batch ingest of rep activity: validate everything first, then one INSERT … ON CONFLICT DO NOTHING."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.core import TeamMember
from models.sales import SalesActivity
from tasks.sales.schemas import ActivityIn
from workers.errors import BadInput


@dataclass(frozen=True)
class InvalidItem:
    index: int
    field: str
    message: str


class InvalidActivities(BadInput):
    """Some items cannot be stored; nothing of the batch was written."""

    def __init__(self, items: Sequence[InvalidItem]) -> None:
        self.items = list(items)
        described = "; ".join(f"activities[{i.index}].{i.field}: {i.message}" for i in self.items[:20])
        more = f" (and {len(self.items) - 20} more)" if len(self.items) > 20 else ""
        super().__init__(f"{len(self.items)} invalid activities: {described}{more}")


@dataclass(frozen=True)
class IngestResult:
    received: int
    inserted: int
    duplicates: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row(workspace_id: int, item: ActivityIn, ingested_at: datetime) -> dict[str, Any]:
    return {
        "workspace_id": workspace_id,
        "activity_id": item.activity_id,
        "activity_type": item.type,
        "rep_id": item.rep_id,
        "occurred_at": item.occurred_at,
        "lead_id": item.lead.id,
        "lead_industry": item.lead.industry,
        "lead_company_size": item.lead.company_size,
        "lead_title_seniority": item.lead.title_seniority,
        "lead_region": item.lead.region,
        "template_id": item.template_id,
        "deal_stage": item.stage,
        "amount_cents": item.amount_cents,
        "ingested_at": ingested_at,
    }


def unknown_reps(session: Session, workspace_id: int, activities: Sequence[ActivityIn]) -> list[InvalidItem]:
    """Items whose rep is not a member of this workspace (another tenant's member counts as unknown)."""
    rep_ids = {a.rep_id for a in activities}
    known = set(
        session.scalars(
            select(TeamMember.id).where(TeamMember.workspace_id == workspace_id, TeamMember.id.in_(rep_ids))
        )
    )
    return [
        InvalidItem(index, "rep_id", f"team member {a.rep_id} is not in this workspace")
        for index, a in enumerate(activities)
        if a.rep_id not in known
    ]


def ingest_activities(
    session: Session, workspace_id: int, activities: Sequence[ActivityIn], now: datetime | None = None
) -> IngestResult:
    """Store a batch idempotently on (workspace, activity_id); a repeat is counted as a duplicate, not stored.

    Raises InvalidActivities (a BadInput) before writing anything if any item is unusable.
    """
    if not activities:
        return IngestResult(received=0, inserted=0, duplicates=0)
    invalid = unknown_reps(session, workspace_id, activities)
    if invalid:
        raise InvalidActivities(invalid)
    # ingested_at is the sync's watermark column; it comes from the same clock the sync reads (freezegun in tests).
    ingested_at = now or datetime.now(UTC)
    statement = (
        insert(SalesActivity)
        .values([_row(workspace_id, item, ingested_at) for item in activities])
        .on_conflict_do_nothing(index_elements=[SalesActivity.workspace_id, SalesActivity.activity_id])
        .returning(SalesActivity.id)
    )
    inserted = len(session.execute(statement).all())
    return IngestResult(received=len(activities), inserted=inserted, duplicates=len(activities) - inserted)
