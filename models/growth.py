"""Growth analytics tables: activation, retention (churn risk), expansion, NPS, invitations, releases, feedback."""

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
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, pg_enum
from models.core import PlanTier, Role


class Milestone(enum.StrEnum):
    """The spec's ten activation milestones."""

    ACCOUNT_CREATED = "account_created"
    PROFILE_COMPLETED = "profile_completed"
    ONBOARDING_COMPLETED = "onboarding_completed"
    FIRST_LEAD_ADDED = "first_lead_added"
    FIRST_CAMPAIGN_CREATED = "first_campaign_created"
    FIRST_CAMPAIGN_LAUNCHED = "first_campaign_launched"
    FIRST_EMAIL_SENT = "first_email_sent"
    EMAIL_ACCOUNT_CONNECTED = "email_account_connected"
    CRM_CONNECTED = "crm_connected"
    TEAM_MEMBER_INVITED = "team_member_invited"


class MilestoneSource(enum.StrEnum):
    APP = "app"  # the main app called growth.record_milestone
    USAGE = "usage"  # proven by a usage event, recorded by growth.sync_usage_milestones


class RiskLevel(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class ChurnModelKind(enum.StrEnum):
    RULE = "rule"
    LOGISTIC = "logistic"


class OpportunityType(enum.StrEnum):
    QUOTA_THRESHOLD = "quota_threshold"  # a metric at ≥ 80 % of its limit
    QUOTA_PROJECTION = "quota_projection"  # on pace to pass the limit before the period ends
    SEAT_CAP = "seat_cap"  # members at the plan's seat cap
    FEATURE_GATE = "feature_gate"  # a user tried a feature the plan lacks
    ENGAGED_LOW_TIER = "engaged_low_tier"  # highly engaged workspace on free/starter


class OpportunityStatus(enum.StrEnum):
    OPEN = "open"
    PRESENTED = "presented"
    CONVERTED = "converted"
    DISMISSED = "dismissed"
    EXPIRED = "expired"


class InvitationStatus(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REVOKED = "revoked"
    EXPIRED = "expired"


class ReleaseCategory(enum.StrEnum):
    FEATURE = "feature"
    BUGFIX = "bugfix"
    IMPROVEMENT = "improvement"
    SECURITY = "security"


class FeedbackCategory(enum.StrEnum):
    BUG = "bug"
    FEATURE_REQUEST = "feature_request"
    IMPROVEMENT = "improvement"
    OTHER = "other"


class FeedbackStatus(enum.StrEnum):
    NEW = "new"
    UNDER_REVIEW = "under_review"
    PLANNED = "planned"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    DECLINED = "declined"


# Opportunities still in play; one per (subscription, type), so a presented one is not re-raised as new.
UNRESOLVED_OPPORTUNITY_SQL = "status IN ('open', 'presented')"


class ActivationMilestone(Base):
    """One row per milestone reached; user_id NULL when usage proves it for the workspace but not who did it."""

    __tablename__ = "activation_milestones"
    __table_args__ = (
        Index(
            "uq_activation_milestones_workspace_user_milestone",
            "workspace_id",
            "user_id",
            "milestone",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("team_members.id", ondelete="CASCADE"), index=True)
    milestone: Mapped[Milestone] = mapped_column(pg_enum(Milestone, "activation_milestone"))
    occurred_at: Mapped[datetime]
    source: Mapped[MilestoneSource] = mapped_column(pg_enum(MilestoneSource, "milestone_source"))
    recorded_at: Mapped[datetime] = created_at_column()


class ActivationMetrics(Base):
    """Activation rollup per user (user_id set) and per workspace (user_id NULL)."""

    __tablename__ = "activation_metrics"
    __table_args__ = (
        Index(
            "uq_activation_metrics_workspace_user",
            "workspace_id",
            "user_id",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
        Index("ix_activation_metrics_activated_at", "activated_at", postgresql_where=text("user_id IS NOT NULL")),
        CheckConstraint("activation_score BETWEEN 0 AND 1", name="score_is_share"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("team_members.id", ondelete="CASCADE"))
    # {"account_created": "2026-01-02T03:04:05+00:00", ...}: each milestone reached and when.
    milestones: Mapped[dict[str, Any]] = mapped_column(JSONB)
    milestones_reached: Mapped[int] = mapped_column(SmallInteger)
    activation_score: Mapped[float] = mapped_column(Float)
    started_at: Mapped[datetime]
    first_value_at: Mapped[datetime | None]
    time_to_first_value_seconds: Mapped[int | None] = mapped_column(BigInteger)
    activated: Mapped[bool] = mapped_column(Boolean)
    activated_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = created_at_column()


class ChurnModel(Base):
    """Each training decision: which model scores, why, and how it did on the time-based hold-out."""

    __tablename__ = "churn_models"
    # One model for the whole product, trained on every tenant's history: not a tenant table.
    __table_args__ = {"info": {"global": True}}

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    trained_at: Mapped[datetime]
    kind: Mapped[ChurnModelKind] = mapped_column(pg_enum(ChurnModelKind, "churn_model_kind"))
    reason: Mapped[str] = mapped_column(String(200))
    parameters: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    n_train: Mapped[int] = mapped_column(Integer)
    n_holdout: Mapped[int] = mapped_column(Integer)
    positives: Mapped[int] = mapped_column(Integer)
    negatives: Mapped[int] = mapped_column(Integer)
    holdout_auc: Mapped[float | None] = mapped_column(Float)
    rule_holdout_auc: Mapped[float | None] = mapped_column(Float)


class RetentionMetrics(Base):
    """One row per workspace per scoring day: the engagement figures, the score and why."""

    __tablename__ = "retention_metrics"
    __table_args__ = (
        Index("uq_retention_metrics_workspace_as_of", "workspace_id", "as_of", unique=True),
        Index("ix_retention_metrics_as_of", "as_of"),
        CheckConstraint("churn_risk_score BETWEEN 0 AND 100", name="score_in_range"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id", ondelete="SET NULL"))
    as_of: Mapped[date] = mapped_column(Date)
    scored_at: Mapped[datetime]
    last_key_action_at: Mapped[datetime | None]
    days_since_last_key_action: Mapped[float] = mapped_column(Float)
    active_days_30d: Mapped[int] = mapped_column(SmallInteger)
    stickiness: Mapped[float] = mapped_column(Float)
    daily_active_members: Mapped[int] = mapped_column(Integer)
    monthly_active_members: Mapped[int] = mapped_column(Integer)
    usage_last_14d: Mapped[int] = mapped_column(BigInteger)
    usage_prev_14d: Mapped[int] = mapped_column(BigInteger)
    usage_trend: Mapped[float] = mapped_column(Float)
    milestone_share: Mapped[float] = mapped_column(Float)
    quota_utilisation: Mapped[float] = mapped_column(Float)
    seats_used: Mapped[int] = mapped_column(Integer)
    nps: Mapped[float | None] = mapped_column(Float)
    nps_responses: Mapped[int] = mapped_column(Integer)
    tenure_days: Mapped[float] = mapped_column(Float)
    plan_code: Mapped[PlanTier | None] = mapped_column(pg_enum(PlanTier, "plan_tier"))
    plan_tier: Mapped[int] = mapped_column(SmallInteger)
    churn_risk_score: Mapped[float] = mapped_column(Float)
    risk_level: Mapped[RiskLevel] = mapped_column(pg_enum(RiskLevel, "churn_risk_level"))
    # [{"feature": "days_since_last_key_action", "weight": 12.5, "unit": "points", "value": 40.0}, ...]
    top_factors: Mapped[list[Any]] = mapped_column(JSONB)
    model: Mapped[ChurnModelKind] = mapped_column(pg_enum(ChurnModelKind, "churn_model_kind"))
    churn_model_id: Mapped[int | None] = mapped_column(ForeignKey("churn_models.id", ondelete="SET NULL"))


class ExpansionMetrics(Base):
    """Upsell opportunities. The main app moves them open → presented → converted or dismissed."""

    __tablename__ = "expansion_metrics"
    __table_args__ = (
        Index(
            "uq_expansion_metrics_unresolved",
            "subscription_id",
            "opportunity_type",
            unique=True,
            postgresql_where=text(UNRESOLVED_OPPORTUNITY_SQL),
        ),
        Index("ix_expansion_metrics_last_seen_open", "last_seen_at", postgresql_where=text("status = 'open'")),
        Index("ix_expansion_metrics_workspace_status", "workspace_id", "status"),
        # The cooldown check: was this (subscription, type) dismissed or converted lately?
        Index(
            "ix_expansion_metrics_resolved",
            "subscription_id",
            "opportunity_type",
            "resolved_at",
            postgresql_where=text("status IN ('dismissed', 'converted')"),
        ),
        CheckConstraint("score BETWEEN 0 AND 100", name="score_in_range"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    opportunity_type: Mapped[OpportunityType] = mapped_column(pg_enum(OpportunityType, "expansion_opportunity_type"))
    status: Mapped[OpportunityStatus] = mapped_column(
        pg_enum(OpportunityStatus, "expansion_status"), server_default=OpportunityStatus.OPEN.value
    )
    current_plan_code: Mapped[PlanTier] = mapped_column(pg_enum(PlanTier, "plan_tier"))
    suggested_plan_code: Mapped[PlanTier] = mapped_column(pg_enum(PlanTier, "plan_tier"))
    expected_mrr_delta_cents: Mapped[int] = mapped_column(BigInteger)
    score: Mapped[float] = mapped_column(Float)
    # Why: the metric, usage, limit, projection, seats or feature that raised it.
    details: Mapped[dict[str, Any]] = mapped_column(JSONB)
    detected_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    presented_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]


class FeatureGateEvent(Base):
    """A user tried a feature the workspace's plan lacks (written by the main app when it shows the paywall)."""

    __tablename__ = "feature_gate_events"
    __table_args__ = (Index("ix_feature_gate_events_workspace_time", "workspace_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("team_members.id", ondelete="SET NULL"))
    feature: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime]


class NPSResponse(Base):
    __tablename__ = "nps_responses"
    __table_args__ = (
        CheckConstraint("score BETWEEN 0 AND 10", name="score_0_to_10"),
        Index("ix_nps_responses_responded_at", "responded_at"),
        Index("ix_nps_responses_user_time", "user_id", "responded_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("team_members.id", ondelete="CASCADE"))
    score: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    responded_at: Mapped[datetime]
    created_at: Mapped[datetime] = created_at_column()


class NPSSnapshot(Base):
    """Rolling NPS per workspace (workspace_id set) and overall (NULL), per day and window; value unrounded."""

    __tablename__ = "nps_snapshots"
    __table_args__ = (
        Index(
            "uq_nps_snapshots_day_window_workspace",
            "snapshot_date",
            "window_days",
            "workspace_id",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    snapshot_date: Mapped[date] = mapped_column(Date)
    window_days: Mapped[int] = mapped_column(SmallInteger)
    workspace_id: Mapped[int | None] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    promoters: Mapped[int] = mapped_column(Integer)
    passives: Mapped[int] = mapped_column(Integer)
    detractors: Mapped[int] = mapped_column(Integer)
    responses: Mapped[int] = mapped_column(Integer)
    nps: Mapped[float | None] = mapped_column(Float)
    margin_of_error: Mapped[float | None] = mapped_column(Float)
    thin: Mapped[bool] = mapped_column(Boolean)
    computed_at: Mapped[datetime]


class SurveyEligibility(Base):
    """Users due an NPS survey, written daily; the main app shows the survey and sets shown_at."""

    __tablename__ = "survey_eligibilities"
    __table_args__ = (Index("uq_survey_eligibilities_user_day", "user_id", "eligible_on", unique=True),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("team_members.id", ondelete="CASCADE"))
    eligible_on: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(50))
    shown_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()


class GrowthWatermark(Base):
    """How far an incremental growth job has read a source table, so each run reads only new rows.

    The position is (txid, id) of usage_events: ids alone can commit out of order, the inserting
    transaction's id below the snapshot's xmin cannot (no transaction still open can add a row behind it).
    """

    __tablename__ = "growth_watermarks"
    # A job's position in a source table shared by all tenants.
    __table_args__ = {"info": {"global": True}}

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_txid: Mapped[int] = mapped_column(BigInteger, server_default="0")
    last_id: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated_at: Mapped[datetime] = created_at_column()


class Invitation(Base):
    """Workspace invitations: the token is shown once and stored only as its SHA-256."""

    __tablename__ = "invitations"
    __table_args__ = (
        Index(
            "uq_invitations_pending_email",
            "workspace_id",
            "email",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_invitations_pending_expiry", "expires_at", postgresql_where=text("status = 'pending'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    # Lower-cased on the way in so one person is one pending invitation.
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[Role] = mapped_column(pg_enum(Role, "team_role"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("team_members.id", ondelete="SET NULL"))
    status: Mapped[InvitationStatus] = mapped_column(
        pg_enum(InvitationStatus, "invitation_status"), server_default=InvitationStatus.PENDING.value
    )
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = created_at_column()
    accepted_at: Mapped[datetime | None]
    accepted_member_id: Mapped[int | None] = mapped_column(ForeignKey("team_members.id", ondelete="SET NULL"))
    revoked_at: Mapped[datetime | None]
    expired_at: Mapped[datetime | None]


class ReleaseNote(Base):
    """Versioned release notes; product-wide, so no workspace_id. Published once when publish_at passes."""

    __tablename__ = "release_notes"
    __table_args__ = (
        Index("ix_release_notes_due", "publish_at", postgresql_where=text("published_at IS NULL")),
        Index("ix_release_notes_published", "published_at"),
        {"info": {"global": True}},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    version: Mapped[str] = mapped_column(String(50), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    category: Mapped[ReleaseCategory] = mapped_column(pg_enum(ReleaseCategory, "release_category"))
    publish_at: Mapped[datetime]
    published_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()


class FeedbackSubmission(Base):
    __tablename__ = "feedback_submissions"
    __table_args__ = (
        CheckConstraint("upvote_count >= 0", name="upvotes_not_negative"),
        Index("ix_feedback_submissions_workspace_created", "workspace_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("team_members.id", ondelete="SET NULL"))
    category: Mapped[FeedbackCategory] = mapped_column(pg_enum(FeedbackCategory, "feedback_category"))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[FeedbackStatus] = mapped_column(
        pg_enum(FeedbackStatus, "feedback_status"), server_default=FeedbackStatus.NEW.value
    )
    # Kept equal to the number of feedback_upvotes rows: changed only in the same statement as an upvote row.
    upvote_count: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()


class FeedbackUpvote(Base):
    __tablename__ = "feedback_upvotes"
    __table_args__ = (Index("uq_feedback_upvotes_feedback_user", "feedback_id", "user_id", unique=True),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback_submissions.id", ondelete="CASCADE"))
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("team_members.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = created_at_column()
