"""Core tables every area shares: tenants, people, API keys, the job ledger, plans, subscriptions and usage."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, pg_enum


class Role(enum.StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_JOB_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class PlanTier(enum.StrEnum):
    FREE = "free"
    STARTER = "starter"
    PROFESSIONAL = "professional"
    ENTERPRISE = "enterprise"


class SubscriptionStatus(enum.StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELLED = "cancelled"


class Metric(enum.StrEnum):
    EMAILS_SENT = "emails_sent"
    LEADS_CREATED = "leads_created"
    CAMPAIGNS_CREATED = "campaigns_created"
    API_CALLS = "api_calls"
    AI_GENERATIONS = "ai_generations"


class QuotaStatus(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"
    EXCEEDED = "exceeded"


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # IANA zone; billing periods and daily rollups are cut at this workspace's midnight.
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    created_at: Mapped[datetime] = created_at_column()


class TeamMember(Base):
    __tablename__ = "team_members"
    __table_args__ = (UniqueConstraint("workspace_id", "email"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(pg_enum(Role, "team_role"), server_default=Role.MEMBER.value)
    created_at: Mapped[datetime] = created_at_column()
    last_active_at: Mapped[datetime | None]


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    # Short public part of the key, used to find the row; the secret part is only ever stored hashed.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_at_column()
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class Job(Base):
    """The ledger: one row per job, written before it is published (transactional outbox)."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index(
            "uq_jobs_workspace_idempotency_key",
            "workspace_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
            postgresql_nulls_not_distinct=True,
        ),
        # The sweeper's query: queued or retrying rows by due time.
        Index(
            "ix_jobs_sweep",
            "run_at",
            postgresql_where=text("status IN ('queued', 'retrying', 'running')"),
        ),
        Index("ix_jobs_workspace_created", "workspace_id", "enqueued_at", "id"),
        Index("ix_jobs_failed_task", "task", postgresql_where=text("status = 'failed'")),
        # The retention sweep: finished rows by age.
        Index(
            "ix_jobs_finished_at",
            "finished_at",
            postgresql_where=text("status IN ('succeeded', 'failed', 'cancelled')"),
        ),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[int | None] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(100))
    args: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    status: Mapped[JobStatus] = mapped_column(pg_enum(JobStatus, "job_status"), server_default="queued")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    # Runs that ended without an outcome (worker killed, hard time limit): bounded by max_lost_runs.
    lost_runs: Mapped[int] = mapped_column(Integer, server_default="0")
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    args_hash: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    enqueued_at: Mapped[datetime] = created_at_column()
    run_at: Mapped[datetime] = created_at_column()
    published_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Plan(Base):
    """The spec's four tiers as data; a NULL limit means unlimited."""

    __tablename__ = "plans"

    code: Mapped[PlanTier] = mapped_column(pg_enum(PlanTier, "plan_tier"), primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    price_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), server_default="USD")
    # {"emails_sent": 100, "leads_created": 50, "campaigns_created": 1, ...}; a missing or null metric is unlimited.
    limits: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # {"emails_sent": 2} cents per unit over the limit; empty: limits are hard quotas.
    overage_unit_cents: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    features: Mapped[dict[str, Any]] = mapped_column(JSONB)
    seats: Mapped[int | None] = mapped_column(Integer)
    # Requests per second the enqueue API grants a workspace on this plan (token bucket refill) and its burst.
    api_rate_per_second: Mapped[int] = mapped_column(Integer)
    api_burst: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(Integer)


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        Index("ix_subscriptions_period_end", "current_period_end"),
        Index("ix_subscriptions_trial_ends", "trial_ends_at", postgresql_where=text("status = 'trialing'")),
        CheckConstraint("billing_anchor_day BETWEEN 1 AND 31", name="anchor_day_in_month"),
        CheckConstraint("current_period_end > current_period_start", name="period_not_empty"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    plan_code: Mapped[PlanTier] = mapped_column(ForeignKey("plans.code"))
    status: Mapped[SubscriptionStatus] = mapped_column(pg_enum(SubscriptionStatus, "subscription_status"))
    started_at: Mapped[datetime]
    # Anniversary day-of-month the periods are anchored on (clamped at month ends).
    billing_anchor_day: Mapped[int] = mapped_column(Integer)
    current_period_start: Mapped[datetime]
    current_period_end: Mapped[datetime]
    trial_ends_at: Mapped[datetime | None]
    trial_plan_code: Mapped[PlanTier | None] = mapped_column(ForeignKey("plans.code"))
    has_payment_method: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    ended_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()


class UsageEvent(Base):
    """Raw metered events, one row per event_id (a repeat is a duplicate, never counted twice)."""

    __tablename__ = "usage_events"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        Index("ix_usage_events_subscription_metric_time", "subscription_id", "metric", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), unique=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    metric: Mapped[Metric] = mapped_column(pg_enum(Metric, "usage_metric"))
    quantity: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime] = created_at_column()
    # The inserting transaction's id (added by billing's migration 0002_billing): the aggregation watermark is a
    # (txid, id) position, exact even when transactions commit out of id order (tasks/billing/aggregation.py).
    txid: Mapped[int] = mapped_column(BigInteger, server_default=text("(pg_current_xact_id())::text::bigint"))


class UsageMetrics(Base):
    """Aggregated usage per subscription, metric and billing period."""

    __tablename__ = "usage_metrics"
    __table_args__ = (UniqueConstraint("subscription_id", "metric", "period_start"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    metric: Mapped[Metric] = mapped_column(pg_enum(Metric, "usage_metric"))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    quantity: Mapped[int] = mapped_column(BigInteger, server_default="0")
    quota_status: Mapped[QuotaStatus] = mapped_column(pg_enum(QuotaStatus, "quota_status"), server_default="ok")
    updated_at: Mapped[datetime] = created_at_column()


class QuotaEvent(Base):
    """One row per quota status transition (growth and notifications read these)."""

    __tablename__ = "quota_events"
    __table_args__ = (UniqueConstraint("subscription_id", "metric", "period_start", "to_status"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    metric: Mapped[Metric] = mapped_column(pg_enum(Metric, "usage_metric"))
    period_start: Mapped[datetime]
    from_status: Mapped[QuotaStatus] = mapped_column(pg_enum(QuotaStatus, "quota_status"))
    to_status: Mapped[QuotaStatus] = mapped_column(pg_enum(QuotaStatus, "quota_status"))
    quantity: Mapped[int] = mapped_column(BigInteger)
    limit: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = created_at_column()
