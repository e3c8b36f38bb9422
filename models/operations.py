"""Operations: poison messages the workers set aside (dead letters) and the checkpoints of resumable backfills."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, pg_enum


class DeadLetterReason(enum.StrEnum):
    # The body could not be decoded (not JSON, wrong content type, truncated).
    UNDECODABLE = "undecodable"
    # A well-formed message naming a task no worker knows (a typo, or a producer ahead of the deploy).
    UNKNOWN_TASK = "unknown_task"
    # A known task whose arguments do not fit its contract (positional args, wrong fields or types).
    BAD_ARGUMENTS = "bad_arguments"
    # Not a Celery task message at all, or one Celery refused as invalid.
    MALFORMED = "malformed"


class DeadLetter(Base):
    """A broker message a worker could not run; it was acked so the queue goes on, and recorded here.

    The body itself is not kept (it may carry transcript or message text): its digest and size identify it.
    """

    __tablename__ = "dead_letters"
    __table_args__ = (Index("ix_dead_letters_received", "received_at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # Set when the arguments named a workspace that exists; poison messages are mostly tenant-less.
    workspace_id: Mapped[int | None] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    reason: Mapped[DeadLetterReason] = mapped_column(pg_enum(DeadLetterReason, "dead_letter_reason"))
    task: Mapped[str | None] = mapped_column(String(200))
    task_id: Mapped[str | None] = mapped_column(String(200), index=True)
    queue: Mapped[str | None] = mapped_column(String(100))
    worker: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str | None] = mapped_column(String(100))
    body_bytes: Mapped[int] = mapped_column(Integer)
    body_sha256: Mapped[str] = mapped_column(String(64))
    # Message headers without argsrepr/kwargsrepr (those repeat argument values).
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = created_at_column()


class BackfillRun(Base):
    """Progress of one `python -m workers backfill` run, so a re-run after an interruption resumes."""

    __tablename__ = "backfill_runs"
    # A backfill spans workspaces: it is an operator's record, not a tenant's.
    __table_args__ = (UniqueConstraint("kind", "period_start", "period_end"), {"info": {"global": True}})

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    # Units are taken in ascending key order; every unit with a key up to `cursor` is enqueued.
    cursor: Mapped[int] = mapped_column(BigInteger, server_default="0")
    enqueued: Mapped[int] = mapped_column(Integer, server_default="0")
    batches: Mapped[int] = mapped_column(Integer, server_default="0")
    started_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None]
