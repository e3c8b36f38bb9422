"""Billing tables: invoices and their lines, subscription history, gapless invoice numbers, aggregation watermarks."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, pg_enum
from models.core import Metric, PlanTier, SubscriptionStatus, UsageEvent


class InvoiceStatus(enum.StrEnum):
    # Draft during the grace period (late usage still counts), then open with a number; never changed after that.
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"


class InvoiceLineKind(enum.StrEnum):
    PLAN_FEE = "plan_fee"
    PRORATION = "proration"
    OVERAGE = "overage"
    LATE_USAGE_ADJUSTMENT = "late_usage_adjustment"


class SubscriptionChange(enum.StrEnum):
    TRIAL_CONVERTED = "trial_converted"
    TRIAL_ENDED_ON_FREE = "trial_ended_on_free"
    PLAN_CHANGED = "plan_changed"
    CANCEL_SCHEDULED = "cancel_scheduled"
    CANCELLED = "cancelled"


# The aggregation watermark needs each event's inserting transaction: rows of a transaction still in flight may
# commit with ids below ones already aggregated, so an id-only watermark could skip them. Every transaction below
# pg_snapshot_xmin has finished, so (txid, id) is a watermark that no later commit can fall behind.
Index("ix_usage_events_txid_id", UsageEvent.txid, UsageEvent.id)


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        # Exactly one invoice per subscription and period, whatever the redeliveries, workers and beats.
        UniqueConstraint("subscription_id", "period_start"),
        UniqueConstraint("number"),
        CheckConstraint("period_end > period_start", name="period_not_empty"),
        CheckConstraint("(status = 'draft') = (number IS NULL)", name="number_iff_finalized"),
        CheckConstraint("total_cents = subtotal_cents", name="total_is_subtotal"),
        # finalize_invoices' query: drafts whose grace period is over.
        Index("ix_invoices_draft_grace", "grace_until", postgresql_where=text("status = 'draft'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    # The plan in effect at the period's end: its limits and overage prices price this period's usage.
    plan_code: Mapped[PlanTier] = mapped_column(pg_enum(PlanTier, "plan_tier"))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    status: Mapped[InvoiceStatus] = mapped_column(pg_enum(InvoiceStatus, "invoice_status"), server_default="draft")
    # INV-2026-000001: assigned at finalisation, sequential per year without gaps.
    number: Mapped[str | None] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    subtotal_cents: Mapped[int] = mapped_column(BigInteger)
    total_cents: Mapped[int] = mapped_column(BigInteger)
    grace_until: Mapped[datetime]
    created_at: Mapped[datetime] = created_at_column()
    finalized_at: Mapped[datetime | None]


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"
    __table_args__ = (
        # Late-usage adjustments look up what was already billed for a (subscription, usage period, metric).
        Index("ix_invoice_lines_billed_usage", "subscription_id", "usage_period_start", "metric"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    kind: Mapped[InvoiceLineKind] = mapped_column(pg_enum(InvoiceLineKind, "invoice_line_kind"))
    description: Mapped[str] = mapped_column(String(200))
    plan_code: Mapped[PlanTier | None] = mapped_column(pg_enum(PlanTier, "plan_tier"))
    metric: Mapped[Metric | None] = mapped_column(pg_enum(Metric, "usage_metric"))
    # The usage period an overage or adjustment line bills (an adjustment bills an earlier period).
    usage_period_start: Mapped[datetime | None]
    # The span a plan-fee or proration line covers.
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    quantity: Mapped[int] = mapped_column(BigInteger)
    unit_amount_cents: Mapped[int] = mapped_column(BigInteger)
    amount_cents: Mapped[int] = mapped_column(BigInteger)


class SubscriptionHistoryEntry(Base):
    """One row per lifecycle change of a subscription (trial outcome, plan change, cancellation)."""

    __tablename__ = "subscription_history_entries"
    __table_args__ = (
        Index("ix_subscription_history_entries_subscription_effective", "subscription_id", "effective_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    change: Mapped[SubscriptionChange] = mapped_column(pg_enum(SubscriptionChange, "subscription_change"))
    from_plan_code: Mapped[PlanTier | None] = mapped_column(pg_enum(PlanTier, "plan_tier"))
    to_plan_code: Mapped[PlanTier | None] = mapped_column(pg_enum(PlanTier, "plan_tier"))
    from_status: Mapped[SubscriptionStatus | None] = mapped_column(pg_enum(SubscriptionStatus, "subscription_status"))
    to_status: Mapped[SubscriptionStatus | None] = mapped_column(pg_enum(SubscriptionStatus, "subscription_status"))
    effective_at: Mapped[datetime]
    recorded_at: Mapped[datetime] = created_at_column()


class InvoiceNumberCounter(Base):
    """The last invoice number given out per year; its row is locked while a number is taken (no gaps)."""

    __tablename__ = "invoice_number_counters"
    # One numbering sequence for the whole platform, not per tenant.
    __table_args__ = (CheckConstraint("last_number >= 0", name="last_number_not_negative"), {"info": {"global": True}})

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_number: Mapped[int] = mapped_column(BigInteger)


class UsageWatermark(Base):
    """How far usage_events have been rolled into usage_metrics (tasks/billing/aggregation.py).

    Every event with txid < last_txid is aggregated. While a range [last_txid, pending_horizon) is being worked
    through, its events with id <= last_event_id are aggregated too.
    """

    __tablename__ = "usage_watermarks"
    # System bookkeeping across all tenants' events.
    __table_args__ = {"info": {"global": True}}

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_txid: Mapped[int] = mapped_column(BigInteger, server_default="0")
    last_event_id: Mapped[int] = mapped_column(BigInteger, server_default="0")
    pending_horizon: Mapped[int | None] = mapped_column(BigInteger)
    pending_max_event_id: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = created_at_column()
