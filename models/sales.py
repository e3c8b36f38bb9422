"""Sales intelligence: rep activity, the AI Salesboard's daily metrics and the adaptive outbound config."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, pg_enum


class ActivityType(enum.StrEnum):
    CALL = "call"
    EMAIL_SENT = "email_sent"
    EMAIL_OPENED = "email_opened"
    EMAIL_REPLIED = "email_replied"
    MEETING_BOOKED = "meeting_booked"
    MEETING_HELD = "meeting_held"
    DEAL_STAGE_CHANGED = "deal_stage_changed"
    DEAL_WON = "deal_won"
    DEAL_LOST = "deal_lost"


class DealStage(enum.StrEnum):
    """Open pipeline stages in order; won and lost are their own activity types."""

    PROSPECTING = "prospecting"
    QUALIFIED = "qualified"
    DEMO = "demo"
    PROPOSAL = "proposal"
    NEGOTIATION = "negotiation"


class CompanySize(enum.StrEnum):
    """Head-count buckets: learning needs categories, and these are the usual CRM bands."""

    MICRO = "1-10"
    SMALL = "11-50"
    MEDIUM = "51-200"
    MID_MARKET = "201-1000"
    LARGE = "1001-5000"
    ENTERPRISE = "5001+"


class TitleSeniority(enum.StrEnum):
    INDIVIDUAL_CONTRIBUTOR = "individual_contributor"
    MANAGER = "manager"
    DIRECTOR = "director"
    VP = "vp"
    C_SUITE = "c_suite"
    OWNER = "owner"


class CoachingSource(enum.StrEnum):
    LLM = "llm"
    OFFLINE = "offline"


class SalesActivity(Base):
    """One rep activity, idempotent on (workspace, activity_id); lead attributes are a snapshot at the time."""

    __tablename__ = "sales_activities"
    __table_args__ = (
        UniqueConstraint("workspace_id", "activity_id"),
        # The salesboard's aggregation scans one workspace's activity by time.
        Index("ix_sales_activities_workspace_occurred", "workspace_id", "occurred_at"),
        # The incremental sync finds the days touched by activity ingested since its last run.
        Index("ix_sales_activities_workspace_ingested", "workspace_id", "ingested_at"),
        # Pipeline value replays each deal's stage history; learning joins outcomes to sends by lead.
        Index("ix_sales_activities_workspace_lead", "workspace_id", "lead_id", "occurred_at"),
        Index("ix_sales_activities_rep", "rep_id"),
        CheckConstraint("amount_cents IS NULL OR amount_cents >= 0", name="amount_not_negative"),
        CheckConstraint(
            "(activity_type = 'deal_stage_changed') = (deal_stage IS NOT NULL)",
            name="stage_only_on_stage_change",
        ),
        CheckConstraint(
            "activity_type <> 'deal_stage_changed' OR amount_cents IS NOT NULL",
            name="stage_change_has_amount",
        ),
        CheckConstraint("activity_type <> 'email_sent' OR template_id IS NOT NULL", name="email_sent_has_template"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    # The sender's own id for the activity: a repeat with the same id is a duplicate, not a second activity.
    activity_id: Mapped[str] = mapped_column(String(128))
    activity_type: Mapped[ActivityType] = mapped_column(pg_enum(ActivityType, "sales_activity_type"))
    rep_id: Mapped[int] = mapped_column(ForeignKey("team_members.id", ondelete="CASCADE"))
    occurred_at: Mapped[datetime]
    # Leads live in the main app; their id is opaque here.
    lead_id: Mapped[str] = mapped_column(String(64))
    lead_industry: Mapped[str | None] = mapped_column(String(64))
    lead_company_size: Mapped[CompanySize | None] = mapped_column(pg_enum(CompanySize, "company_size"))
    lead_title_seniority: Mapped[TitleSeniority | None] = mapped_column(pg_enum(TitleSeniority, "title_seniority"))
    lead_region: Mapped[str | None] = mapped_column(String(32))
    template_id: Mapped[str | None] = mapped_column(String(64))
    deal_stage: Mapped[DealStage | None] = mapped_column(pg_enum(DealStage, "deal_stage"))
    amount_cents: Mapped[int | None] = mapped_column(BigInteger)
    ingested_at: Mapped[datetime] = created_at_column()


class AISalesboardMetric(Base):
    """One rep's day on the AI Salesboard (the day is cut at the workspace's midnight).

    Every figure is a typed column: the board is written for a whole team every 5 minutes, and typed values
    cost a fraction of building JSON documents (numbers in jsonb are numerics). `tasks.sales.salesboard.board_view`
    presents a row as the documented shapes (funnel, conversion rates, score components, trends).
    """

    __tablename__ = "ai_salesboard_metrics"
    __table_args__ = (
        UniqueConstraint("workspace_id", "rep_id", "metric_date"),
        # The board reads one workspace's day for every rep.
        Index("ix_ai_salesboard_metrics_workspace_date", "workspace_id", "metric_date"),
        Index("ix_ai_salesboard_metrics_rep", "rep_id"),
        CheckConstraint("performance_score BETWEEN 0 AND 100", name="score_in_range"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    rep_id: Mapped[int] = mapped_column(ForeignKey("team_members.id", ondelete="CASCADE"))
    metric_date: Mapped[date] = mapped_column(Date)
    # The day's own counts.
    calls: Mapped[int] = mapped_column(Integer, server_default="0")
    emails_sent: Mapped[int] = mapped_column(Integer, server_default="0")
    emails_opened: Mapped[int] = mapped_column(Integer, server_default="0")
    emails_replied: Mapped[int] = mapped_column(Integer, server_default="0")
    meetings_booked: Mapped[int] = mapped_column(Integer, server_default="0")
    meetings_held: Mapped[int] = mapped_column(Integer, server_default="0")
    deals_won: Mapped[int] = mapped_column(Integer, server_default="0")
    deals_lost: Mapped[int] = mapped_column(Integer, server_default="0")
    # Open pipeline at the end of the day: the latest amount of every deal whose last event is a stage change.
    pipeline_value_cents: Mapped[int] = mapped_column(BigInteger, server_default="0")
    won_value_cents: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # The trailing 30 days (one day is too few events for a rate): the funnel and its conversion rates.
    emails_sent_30d: Mapped[int] = mapped_column(Integer, server_default="0")
    emails_opened_30d: Mapped[int] = mapped_column(Integer, server_default="0")
    emails_replied_30d: Mapped[int] = mapped_column(Integer, server_default="0")
    meetings_booked_30d: Mapped[int] = mapped_column(Integer, server_default="0")
    meetings_held_30d: Mapped[int] = mapped_column(Integer, server_default="0")
    deals_won_30d: Mapped[int] = mapped_column(Integer, server_default="0")
    deals_lost_30d: Mapped[int] = mapped_column(Integer, server_default="0")
    won_value_30d_cents: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # Trends: the last 7 days, the 7 before them, and the 30 before the last 7.
    calls_7d: Mapped[int] = mapped_column(Integer, server_default="0")
    calls_prior_7d: Mapped[int] = mapped_column(Integer, server_default="0")
    calls_prior_30d: Mapped[int] = mapped_column(Integer, server_default="0")
    emails_sent_7d: Mapped[int] = mapped_column(Integer, server_default="0")
    emails_sent_prior_7d: Mapped[int] = mapped_column(Integer, server_default="0")
    emails_sent_prior_30d: Mapped[int] = mapped_column(Integer, server_default="0")
    emails_replied_7d: Mapped[int] = mapped_column(Integer, server_default="0")
    emails_replied_prior_7d: Mapped[int] = mapped_column(Integer, server_default="0")
    emails_replied_prior_30d: Mapped[int] = mapped_column(Integer, server_default="0")
    meetings_booked_7d: Mapped[int] = mapped_column(Integer, server_default="0")
    meetings_booked_prior_7d: Mapped[int] = mapped_column(Integer, server_default="0")
    meetings_booked_prior_30d: Mapped[int] = mapped_column(Integer, server_default="0")
    meetings_held_7d: Mapped[int] = mapped_column(Integer, server_default="0")
    meetings_held_prior_7d: Mapped[int] = mapped_column(Integer, server_default="0")
    meetings_held_prior_30d: Mapped[int] = mapped_column(Integer, server_default="0")
    won_value_7d_cents: Mapped[int] = mapped_column(BigInteger, server_default="0")
    won_value_prior_7d_cents: Mapped[int] = mapped_column(BigInteger, server_default="0")
    won_value_prior_30d_cents: Mapped[int] = mapped_column(BigInteger, server_default="0")
    pipeline_7d_ago_cents: Mapped[int] = mapped_column(BigInteger, server_default="0")
    pipeline_30d_ago_cents: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # The score and what explains it: each component's mid-rank percentile in the team that day, the team's
    # median of each component, and how many reps were on the board (tasks/sales/scoring.py).
    performance_score: Mapped[float] = mapped_column(Float, server_default="0")
    activity_percentile: Mapped[float] = mapped_column(Float, server_default="0")
    reply_rate_percentile: Mapped[float] = mapped_column(Float, server_default="0")
    meetings_percentile: Mapped[float] = mapped_column(Float, server_default="0")
    pipeline_percentile: Mapped[float] = mapped_column(Float, server_default="0")
    wins_percentile: Mapped[float] = mapped_column(Float, server_default="0")
    team_size: Mapped[int] = mapped_column(Integer, server_default="0")
    team_median_activity: Mapped[float] = mapped_column(Float, server_default="0")
    team_median_reply_rate: Mapped[float] = mapped_column(Float, server_default="0")
    team_median_meetings: Mapped[float] = mapped_column(Float, server_default="0")
    team_median_pipeline: Mapped[float] = mapped_column(Float, server_default="0")
    team_median_wins: Mapped[float] = mapped_column(Float, server_default="0")
    # Insights: components in the team's top quartile (strengths) and bottom quartile (opportunities).
    strengths: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    opportunities: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    coaching_recommendations: Mapped[list[Any]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    coaching_source: Mapped[CoachingSource | None] = mapped_column(pg_enum(CoachingSource, "coaching_source"))
    # Digest of the coaching situation (which rules fire): the LLM is asked again only when it changes.
    coaching_input_hash: Mapped[str | None] = mapped_column(String(64))
    # When a sync last changed this row's figures (an unchanged row is not rewritten).
    synced_at: Mapped[datetime]
    created_at: Mapped[datetime] = created_at_column()


class SalesRepDay(Base):
    """The per-rep per-local-day rollup of raw activity the board's trailing windows are computed from.

    Each sync rewrites only the days touched by activity ingested since the last rollup, so a 5-minute sync
    reads today's raw activity and a narrow row per rep and day of history, not 37 days of raw activity.
    """

    __tablename__ = "sales_rep_days"
    __table_args__ = (Index("ix_sales_rep_days_rep", "rep_id"),)

    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    metric_date: Mapped[date] = mapped_column(Date, primary_key=True)
    rep_id: Mapped[int] = mapped_column(
        ForeignKey("team_members.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    calls: Mapped[int] = mapped_column(Integer)
    emails_sent: Mapped[int] = mapped_column(Integer)
    emails_opened: Mapped[int] = mapped_column(Integer)
    emails_replied: Mapped[int] = mapped_column(Integer)
    meetings_booked: Mapped[int] = mapped_column(Integer)
    meetings_held: Mapped[int] = mapped_column(Integer)
    deals_won: Mapped[int] = mapped_column(Integer)
    deals_lost: Mapped[int] = mapped_column(Integer)
    events: Mapped[int] = mapped_column(Integer)
    won_value_cents: Mapped[int] = mapped_column(BigInteger)
    # Net change of the rep's open pipeline that day. On the rollup's first day it also carries everything
    # before it, so the running sum from the first day is the open pipeline.
    pipeline_change_cents: Mapped[int] = mapped_column(BigInteger)


class SalesboardRollup(Base):
    """The state of a workspace's rollup: what it covers, how fresh it is, and which board days it changed."""

    __tablename__ = "salesboard_rollups"

    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    # The timezone the days were cut in: a workspace that changes its timezone is rolled up again.
    timezone: Mapped[str] = mapped_column(String(64))
    covered_from: Mapped[date] = mapped_column(Date)
    # Activity ingested from (this - the late-commit margin) on is not rolled up yet.
    rolled_up_at: Mapped[datetime]
    # The earliest board day whose rollup changed since the last team sync (NULL: none).
    board_dirty_from: Mapped[date | None] = mapped_column(Date)
    # The last day the team board was computed for: days after it have no rows yet.
    board_computed_through: Mapped[date | None] = mapped_column(Date)


class SalesboardSync(Base):
    """When a workspace's board (rep_scope 0) or one rep's rows were last synced: the 5-minute cache."""

    __tablename__ = "salesboard_syncs"

    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    # 0 for the whole team, else a team member id (a nullable key column cannot be part of the primary key).
    rep_scope: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    synced_at: Mapped[datetime]


class AdaptiveAIConfig(Base):
    """A workspace's adaptive outbound settings and what the nightly learning found."""

    __tablename__ = "adaptive_ai_configs"
    __table_args__ = (
        CheckConstraint("min_sample_size >= 1", name="min_sample_positive"),
        CheckConstraint("lookback_days BETWEEN 1 AND 730", name="lookback_in_range"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # Fewer leads (or sends, for a template) than this and a value is reported as "insufficient sample".
    min_sample_size: Mapped[int] = mapped_column(Integer, server_default="30")
    lookback_days: Mapped[int] = mapped_column(Integer, server_default="90")
    learned_patterns: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    best_templates: Mapped[list[Any]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    baseline_reply_rate: Mapped[float | None] = mapped_column(Float)
    baseline_meeting_rate: Mapped[float | None] = mapped_column(Float)
    # Reply rate of the 30 days before the first learning run: what "improvement" is measured against.
    initial_success_rate: Mapped[float | None] = mapped_column(Float)
    current_success_rate: Mapped[float | None] = mapped_column(Float)
    improvement: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    samples_analyzed: Mapped[int] = mapped_column(Integer, server_default="0")
    learning_started_at: Mapped[datetime | None]
    last_learned_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()
