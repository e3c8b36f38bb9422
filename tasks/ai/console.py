"""The AI Safety Console's records: one ai_safety_logs row per finding of a scan, and the rolled-up counts."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Date, cast, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.ai import AISafetyLog, SafetyChannel, SafetyReviewStatus
from models.core import Workspace
from tasks.ai.safety import ScanContext, scan
from workers.errors import BadInput


def scan_content(
    session: Session,
    *,
    workspace_id: int,
    scan_id: uuid.UUID,
    content: str,
    channel: SafetyChannel,
    context: ScanContext,
) -> dict[str, Any]:
    """Scan, record every finding (idempotent on the scan id), and return the verdict."""
    verdict = scan(content, channel, context)
    content_hash = hashlib.sha256(content.encode()).hexdigest()
    if verdict.findings:
        session.execute(
            insert(AISafetyLog)
            .values(
                [
                    {
                        "workspace_id": workspace_id,
                        "scan_id": scan_id,
                        "ordinal": ordinal,
                        "channel": channel,
                        "category": finding.category,
                        "finding_type": finding.finding_type,
                        "severity": finding.severity,
                        "action": finding.action,
                        "detail": finding.as_json()["detail"],
                        "content_hash": content_hash,
                    }
                    for ordinal, finding in enumerate(verdict.findings)
                ]
            )
            .on_conflict_do_nothing(constraint="uq_ai_safety_logs_scan_id_ordinal")
        )
    return {
        "scan_id": str(scan_id),
        "verdict": verdict.action.value,
        "allowed": verdict.allowed,
        "blocked": verdict.blocked,
        "modified_content": verdict.modified_content,
        "findings": [finding.as_json() for finding in verdict.findings],
    }


def window_start(until: datetime, days: int, zone: ZoneInfo) -> datetime:
    """Local midnight starting the first of the last `days` calendar days in `zone` (today included), as UTC.

    The console shows one bar per local day: a window of `days` x 24 hours from now would cut the first day's bar
    in half, and across a DST change it would not even start at a midnight."""
    first_day = until.astimezone(zone).date() - timedelta(days=days - 1)
    return datetime.combine(first_day, time(0), tzinfo=zone).astimezone(UTC)


def safety_stats(session: Session, *, workspace_id: int, days: int, now: datetime | None = None) -> dict[str, Any]:
    """Counts by day (in the workspace's timezone), category, type, severity and action over the last `days`
    local calendar days, today included."""
    timezone = session.execute(select(Workspace.timezone).where(Workspace.id == workspace_id)).scalar_one_or_none()
    if timezone is None:
        raise BadInput(f"workspace {workspace_id} not found")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadInput(f"workspace {workspace_id} has an unknown timezone") from exc
    until = now or datetime.now(UTC)
    since = window_start(until, days, zone)
    day = cast(func.timezone(timezone, AISafetyLog.created_at), Date).label("day")
    window = (
        AISafetyLog.workspace_id == workspace_id,
        AISafetyLog.created_at >= since,
        AISafetyLog.created_at < until,
    )
    rows = session.execute(
        select(
            day,
            AISafetyLog.category,
            AISafetyLog.finding_type,
            AISafetyLog.severity,
            AISafetyLog.action,
            func.count().label("count"),
        )
        .where(*window)
        .group_by(day, AISafetyLog.category, AISafetyLog.finding_type, AISafetyLog.severity, AISafetyLog.action)
        .order_by(day, AISafetyLog.category, AISafetyLog.finding_type)
    ).all()
    pending = session.execute(
        select(func.count()).where(*window, AISafetyLog.review_status == SafetyReviewStatus.PENDING)
    ).scalar_one()
    totals: dict[str, dict[str, int]] = {"category": {}, "severity": {}, "action": {}}
    by_day: list[dict[str, Any]] = []
    for row in rows:
        by_day.append(
            {
                "day": row.day.isoformat(),
                "category": row.category.value,
                "type": row.finding_type,
                "severity": row.severity.value,
                "action": row.action.value,
                "count": row.count,
            }
        )
        for dimension, value in (("category", row.category), ("severity", row.severity), ("action", row.action)):
            totals[dimension][value.value] = totals[dimension].get(value.value, 0) + row.count
    return {
        "workspace_id": workspace_id,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "timezone": timezone,
        "total": sum(r["count"] for r in by_day),
        "pending_review": pending,
        "by_day": by_day,
        "totals": totals,
    }
