"""Release notes go live once their publish_at has passed, exactly once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from models.growth import ReleaseNote


def publish_releases(session: Session, now: datetime) -> dict[str, Any]:
    # `published_at IS NULL` in the WHERE makes this a compare-and-set: a second run (or a second beat)
    # finds nothing left to publish, and the first publication time is never overwritten.
    rows = session.execute(
        update(ReleaseNote)
        .where(ReleaseNote.published_at.is_(None), ReleaseNote.publish_at <= now)
        .values(published_at=now)
        .returning(ReleaseNote.id, ReleaseNote.version)
    ).all()
    return {"published": sorted(r.version for r in rows)}
