"""growth analytics: activation, retention (churn risk), expansion, NPS, invitations, releases, feedback

Revision ID: 0004_growth
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_growth"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# This revision's own enum types; plan_tier and team_role belong to 0001 and are only referenced.
ENUMS: dict[str, tuple[str, ...]] = {
    "churn_model_kind": ("rule", "logistic"),
    "release_category": ("feature", "bugfix", "improvement", "security"),
    "activation_milestone": (
        "account_created",
        "profile_completed",
        "onboarding_completed",
        "first_lead_added",
        "first_campaign_created",
        "first_campaign_launched",
        "first_email_sent",
        "email_account_connected",
        "crm_connected",
        "team_member_invited",
    ),
    "milestone_source": ("app", "usage"),
    "expansion_opportunity_type": (
        "quota_threshold",
        "quota_projection",
        "seat_cap",
        "feature_gate",
        "engaged_low_tier",
    ),
    "expansion_status": ("open", "presented", "converted", "dismissed", "expired"),
    "feedback_category": ("bug", "feature_request", "improvement", "other"),
    "feedback_status": ("new", "under_review", "planned", "in_progress", "completed", "declined"),
    "invitation_status": ("pending", "accepted", "revoked", "expired"),
    "churn_risk_level": ("low", "medium", "high"),
}


def _enum(name: str) -> postgresql.ENUM:
    # Created once up front (or by 0001); create_type=False keeps create_table from creating it again.
    return postgresql.ENUM(name=name, create_type=False)


def upgrade() -> None:
    for name, values in ENUMS.items():
        postgresql.ENUM(*values, name=name).create(op.get_bind())
    op.create_table(
        "churn_models",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", _enum("churn_model_kind"), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("parameters", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("n_train", sa.Integer(), nullable=False),
        sa.Column("n_holdout", sa.Integer(), nullable=False),
        sa.Column("positives", sa.Integer(), nullable=False),
        sa.Column("negatives", sa.Integer(), nullable=False),
        sa.Column("holdout_auc", sa.Float(), nullable=True),
        sa.Column("rule_holdout_auc", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_churn_models")),
    )
    op.create_table(
        "growth_watermarks",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("last_txid", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_id", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_growth_watermarks")),
    )
    op.create_table(
        "release_notes",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.String(length=50), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("category", _enum("release_category"), nullable=False),
        sa.Column("publish_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_notes")),
        sa.UniqueConstraint("version", name=op.f("uq_release_notes_version")),
    )
    op.create_index(
        "ix_release_notes_due",
        "release_notes",
        ["publish_at"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_index("ix_release_notes_published", "release_notes", ["published_at"], unique=False)
    op.create_table(
        "nps_snapshots",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("snapshot_date", sa.Date(), nullable=False),
        sa.Column("window_days", sa.SmallInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=True),
        sa.Column("promoters", sa.Integer(), nullable=False),
        sa.Column("passives", sa.Integer(), nullable=False),
        sa.Column("detractors", sa.Integer(), nullable=False),
        sa.Column("responses", sa.Integer(), nullable=False),
        sa.Column("nps", sa.Float(), nullable=True),
        sa.Column("margin_of_error", sa.Float(), nullable=True),
        sa.Column("thin", sa.Boolean(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_nps_snapshots_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nps_snapshots")),
    )
    op.create_index(op.f("ix_nps_snapshots_workspace_id"), "nps_snapshots", ["workspace_id"], unique=False)
    op.create_index(
        "uq_nps_snapshots_day_window_workspace",
        "nps_snapshots",
        ["snapshot_date", "window_days", "workspace_id"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "activation_metrics",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("milestones", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("milestones_reached", sa.SmallInteger(), nullable=False),
        sa.Column("activation_score", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_value_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("time_to_first_value_seconds", sa.BigInteger(), nullable=True),
        sa.Column("activated", sa.Boolean(), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("activation_score BETWEEN 0 AND 1", name=op.f("ck_activation_metrics_score_is_share")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["team_members.id"],
            name=op.f("fk_activation_metrics_user_id_team_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_activation_metrics_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activation_metrics")),
    )
    op.create_index(
        "ix_activation_metrics_activated_at",
        "activation_metrics",
        ["activated_at"],
        unique=False,
        postgresql_where=sa.text("user_id IS NOT NULL"),
    )
    op.create_index(
        "uq_activation_metrics_workspace_user",
        "activation_metrics",
        ["workspace_id", "user_id"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "activation_milestones",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("milestone", _enum("activation_milestone"), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", _enum("milestone_source"), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["team_members.id"],
            name=op.f("fk_activation_milestones_user_id_team_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_activation_milestones_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activation_milestones")),
    )
    op.create_index(op.f("ix_activation_milestones_user_id"), "activation_milestones", ["user_id"], unique=False)
    op.create_index(
        "uq_activation_milestones_workspace_user_milestone",
        "activation_milestones",
        ["workspace_id", "user_id", "milestone"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "expansion_metrics",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("opportunity_type", _enum("expansion_opportunity_type"), nullable=False),
        sa.Column("status", _enum("expansion_status"), server_default="open", nullable=False),
        sa.Column("current_plan_code", _enum("plan_tier"), nullable=False),
        sa.Column("suggested_plan_code", _enum("plan_tier"), nullable=False),
        sa.Column("expected_mrr_delta_cents", sa.BigInteger(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("presented_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("score BETWEEN 0 AND 100", name=op.f("ck_expansion_metrics_score_in_range")),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_expansion_metrics_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_expansion_metrics_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_expansion_metrics")),
    )
    op.create_index(
        "ix_expansion_metrics_last_seen_open",
        "expansion_metrics",
        ["last_seen_at"],
        unique=False,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index(
        "ix_expansion_metrics_workspace_status", "expansion_metrics", ["workspace_id", "status"], unique=False
    )
    op.create_index(
        "ix_expansion_metrics_resolved",
        "expansion_metrics",
        ["subscription_id", "opportunity_type", "resolved_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('dismissed', 'converted')"),
    )
    op.create_index(
        "uq_expansion_metrics_unresolved",
        "expansion_metrics",
        ["subscription_id", "opportunity_type"],
        unique=True,
        postgresql_where=sa.text("status IN ('open', 'presented')"),
    )
    op.create_table(
        "feature_gate_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("feature", sa.String(length=100), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["team_members.id"],
            name=op.f("fk_feature_gate_events_user_id_team_members"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_feature_gate_events_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feature_gate_events")),
    )
    op.create_index(
        "ix_feature_gate_events_workspace_time", "feature_gate_events", ["workspace_id", "occurred_at"], unique=False
    )
    op.create_table(
        "feedback_submissions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("category", _enum("feedback_category"), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", _enum("feedback_status"), server_default="new", nullable=False),
        sa.Column("upvote_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("upvote_count >= 0", name=op.f("ck_feedback_submissions_upvotes_not_negative")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["team_members.id"],
            name=op.f("fk_feedback_submissions_user_id_team_members"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_feedback_submissions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_submissions")),
    )
    op.create_index(
        "ix_feedback_submissions_workspace_created",
        "feedback_submissions",
        ["workspace_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "invitations",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", _enum("team_role"), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("invited_by_id", sa.BigInteger(), nullable=True),
        sa.Column("status", _enum("invitation_status"), server_default="pending", nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_member_id", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["accepted_member_id"],
            ["team_members.id"],
            name=op.f("fk_invitations_accepted_member_id_team_members"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["invited_by_id"],
            ["team_members.id"],
            name=op.f("fk_invitations_invited_by_id_team_members"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_invitations_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_invitations_token_hash")),
    )
    op.create_index(
        "ix_invitations_pending_expiry",
        "invitations",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "uq_invitations_pending_email",
        "invitations",
        ["workspace_id", "email"],
        unique=True,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "nps_responses",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("responded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("score BETWEEN 0 AND 10", name=op.f("ck_nps_responses_score_0_to_10")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["team_members.id"], name=op.f("fk_nps_responses_user_id_team_members"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_nps_responses_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nps_responses")),
    )
    op.create_index("ix_nps_responses_responded_at", "nps_responses", ["responded_at"], unique=False)
    op.create_index("ix_nps_responses_user_time", "nps_responses", ["user_id", "responded_at"], unique=False)
    op.create_index(op.f("ix_nps_responses_workspace_id"), "nps_responses", ["workspace_id"], unique=False)
    op.create_table(
        "retention_metrics",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=True),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_key_action_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("days_since_last_key_action", sa.Float(), nullable=False),
        sa.Column("active_days_30d", sa.SmallInteger(), nullable=False),
        sa.Column("stickiness", sa.Float(), nullable=False),
        sa.Column("daily_active_members", sa.Integer(), nullable=False),
        sa.Column("monthly_active_members", sa.Integer(), nullable=False),
        sa.Column("usage_last_14d", sa.BigInteger(), nullable=False),
        sa.Column("usage_prev_14d", sa.BigInteger(), nullable=False),
        sa.Column("usage_trend", sa.Float(), nullable=False),
        sa.Column("milestone_share", sa.Float(), nullable=False),
        sa.Column("quota_utilisation", sa.Float(), nullable=False),
        sa.Column("seats_used", sa.Integer(), nullable=False),
        sa.Column("nps", sa.Float(), nullable=True),
        sa.Column("nps_responses", sa.Integer(), nullable=False),
        sa.Column("tenure_days", sa.Float(), nullable=False),
        sa.Column("plan_code", _enum("plan_tier"), nullable=True),
        sa.Column("plan_tier", sa.SmallInteger(), nullable=False),
        sa.Column("churn_risk_score", sa.Float(), nullable=False),
        sa.Column("risk_level", _enum("churn_risk_level"), nullable=False),
        sa.Column("top_factors", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("model", _enum("churn_model_kind"), nullable=False),
        sa.Column("churn_model_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("churn_risk_score BETWEEN 0 AND 100", name=op.f("ck_retention_metrics_score_in_range")),
        sa.ForeignKeyConstraint(
            ["churn_model_id"],
            ["churn_models.id"],
            name=op.f("fk_retention_metrics_churn_model_id_churn_models"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_retention_metrics_subscription_id_subscriptions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_retention_metrics_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_metrics")),
    )
    op.create_index("ix_retention_metrics_as_of", "retention_metrics", ["as_of"], unique=False)
    op.create_index("uq_retention_metrics_workspace_as_of", "retention_metrics", ["workspace_id", "as_of"], unique=True)
    op.create_table(
        "survey_eligibilities",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("eligible_on", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=50), nullable=False),
        sa.Column("shown_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["team_members.id"],
            name=op.f("fk_survey_eligibilities_user_id_team_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_survey_eligibilities_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_eligibilities")),
    )
    op.create_index(
        op.f("ix_survey_eligibilities_workspace_id"), "survey_eligibilities", ["workspace_id"], unique=False
    )
    op.create_index("uq_survey_eligibilities_user_day", "survey_eligibilities", ["user_id", "eligible_on"], unique=True)
    op.create_table(
        "feedback_upvotes",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("feedback_id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["feedback_id"],
            ["feedback_submissions.id"],
            name=op.f("fk_feedback_upvotes_feedback_id_feedback_submissions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["team_members.id"], name=op.f("fk_feedback_upvotes_user_id_team_members"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_feedback_upvotes_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_upvotes")),
    )
    op.create_index(op.f("ix_feedback_upvotes_user_id"), "feedback_upvotes", ["user_id"], unique=False)
    op.create_index(op.f("ix_feedback_upvotes_workspace_id"), "feedback_upvotes", ["workspace_id"], unique=False)
    op.create_index("uq_feedback_upvotes_feedback_user", "feedback_upvotes", ["feedback_id", "user_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_feedback_upvotes_feedback_user", table_name="feedback_upvotes")
    op.drop_index(op.f("ix_feedback_upvotes_workspace_id"), table_name="feedback_upvotes")
    op.drop_index(op.f("ix_feedback_upvotes_user_id"), table_name="feedback_upvotes")
    op.drop_table("feedback_upvotes")
    op.drop_index("uq_survey_eligibilities_user_day", table_name="survey_eligibilities")
    op.drop_index(op.f("ix_survey_eligibilities_workspace_id"), table_name="survey_eligibilities")
    op.drop_table("survey_eligibilities")
    op.drop_index("uq_retention_metrics_workspace_as_of", table_name="retention_metrics")
    op.drop_index("ix_retention_metrics_as_of", table_name="retention_metrics")
    op.drop_table("retention_metrics")
    op.drop_index(op.f("ix_nps_responses_workspace_id"), table_name="nps_responses")
    op.drop_index("ix_nps_responses_user_time", table_name="nps_responses")
    op.drop_index("ix_nps_responses_responded_at", table_name="nps_responses")
    op.drop_table("nps_responses")
    op.drop_index(
        "uq_invitations_pending_email", table_name="invitations", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_index(
        "ix_invitations_pending_expiry", table_name="invitations", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_table("invitations")
    op.drop_index("ix_feedback_submissions_workspace_created", table_name="feedback_submissions")
    op.drop_table("feedback_submissions")
    op.drop_index("ix_feature_gate_events_workspace_time", table_name="feature_gate_events")
    op.drop_table("feature_gate_events")
    op.drop_index(
        "uq_expansion_metrics_unresolved",
        table_name="expansion_metrics",
        postgresql_where=sa.text("status IN ('open', 'presented')"),
    )
    op.drop_index("ix_expansion_metrics_workspace_status", table_name="expansion_metrics")
    op.drop_index(
        "ix_expansion_metrics_resolved",
        table_name="expansion_metrics",
        postgresql_where=sa.text("status IN ('dismissed', 'converted')"),
    )
    op.drop_index(
        "ix_expansion_metrics_last_seen_open",
        table_name="expansion_metrics",
        postgresql_where=sa.text("status = 'open'"),
    )
    op.drop_table("expansion_metrics")
    op.drop_index(
        "uq_activation_milestones_workspace_user_milestone",
        table_name="activation_milestones",
        postgresql_nulls_not_distinct=True,
    )
    op.drop_index(op.f("ix_activation_milestones_user_id"), table_name="activation_milestones")
    op.drop_table("activation_milestones")
    op.drop_index(
        "uq_activation_metrics_workspace_user", table_name="activation_metrics", postgresql_nulls_not_distinct=True
    )
    op.drop_index(
        "ix_activation_metrics_activated_at",
        table_name="activation_metrics",
        postgresql_where=sa.text("user_id IS NOT NULL"),
    )
    op.drop_table("activation_metrics")
    op.drop_index(
        "uq_nps_snapshots_day_window_workspace", table_name="nps_snapshots", postgresql_nulls_not_distinct=True
    )
    op.drop_index(op.f("ix_nps_snapshots_workspace_id"), table_name="nps_snapshots")
    op.drop_table("nps_snapshots")
    op.drop_index("ix_release_notes_published", table_name="release_notes")
    op.drop_index("ix_release_notes_due", table_name="release_notes", postgresql_where=sa.text("published_at IS NULL"))
    op.drop_table("release_notes")
    op.drop_table("growth_watermarks")
    op.drop_table("churn_models")
    for name in reversed(ENUMS):
        postgresql.ENUM(name=name).drop(op.get_bind())
