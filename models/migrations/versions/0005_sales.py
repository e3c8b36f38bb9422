"""Sales intelligence: activity, AI Salesboard metrics, their daily rollup and sync state, adaptive outbound configs.

Revision ID: 0005_sales
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005_sales"
down_revision = "0001"
branch_labels = None
depends_on = None

ACTIVITY_TYPES = (
    "call",
    "email_sent",
    "email_opened",
    "email_replied",
    "meeting_booked",
    "meeting_held",
    "deal_stage_changed",
    "deal_won",
    "deal_lost",
)
DEAL_STAGES = ("prospecting", "qualified", "demo", "proposal", "negotiation")
COMPANY_SIZES = ("1-10", "11-50", "51-200", "201-1000", "1001-5000", "5001+")
TITLE_SENIORITIES = ("individual_contributor", "manager", "director", "vp", "c_suite", "owner")
COACHING_SOURCES = ("llm", "offline")
ROLLUP_COUNTS = (
    "calls",
    "emails_sent",
    "emails_opened",
    "emails_replied",
    "meetings_booked",
    "meetings_held",
    "deals_won",
    "deals_lost",
    "events",
)
# The board's figures in column order: the day, the trailing 30 days, the trends (see models/sales.py).
_TREND_METRICS = ("calls", "emails_sent", "emails_replied", "meetings_booked", "meetings_held")
BOARD_COUNTS = (
    *ROLLUP_COUNTS[:-1],
    "pipeline_value_cents",
    "won_value_cents",
    *(f"{name}_30d" for name in ROLLUP_COUNTS[1:-1]),
    "won_value_30d_cents",
    *(f"{metric}_{window}" for metric in _TREND_METRICS for window in ("7d", "prior_7d", "prior_30d")),
    "won_value_7d_cents",
    "won_value_prior_7d_cents",
    "won_value_prior_30d_cents",
    "pipeline_7d_ago_cents",
    "pipeline_30d_ago_cents",
)
_COMPONENTS = ("activity", "reply_rate", "meetings", "pipeline", "wins")
BOARD_SCORES = (
    "performance_score",
    *(f"{name}_percentile" for name in _COMPONENTS),
    *(f"team_median_{name}" for name in _COMPONENTS),
)


def _now() -> sa.TextClause:
    return sa.text("now()")


def _zero(name: str, type_: sa.types.TypeEngine) -> sa.Column:
    return sa.Column(name, type_, server_default="0", nullable=False)


def upgrade() -> None:
    op.create_table(
        "sales_activities",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("activity_id", sa.String(128), nullable=False),
        sa.Column("activity_type", sa.Enum(*ACTIVITY_TYPES, name="sales_activity_type"), nullable=False),
        sa.Column("rep_id", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lead_id", sa.String(64), nullable=False),
        sa.Column("lead_industry", sa.String(64), nullable=True),
        sa.Column("lead_company_size", sa.Enum(*COMPANY_SIZES, name="company_size"), nullable=True),
        sa.Column("lead_title_seniority", sa.Enum(*TITLE_SENIORITIES, name="title_seniority"), nullable=True),
        sa.Column("lead_region", sa.String(32), nullable=True),
        sa.Column("template_id", sa.String(64), nullable=True),
        sa.Column("deal_stage", sa.Enum(*DEAL_STAGES, name="deal_stage"), nullable=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=True),
        sa.Column("ingested_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_sales_activities_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rep_id"], ["team_members.id"], name=op.f("fk_sales_activities_rep_id_team_members"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint("workspace_id", "activity_id", name=op.f("uq_sales_activities_workspace_id_activity_id")),
        sa.CheckConstraint(
            "amount_cents IS NULL OR amount_cents >= 0", name=op.f("ck_sales_activities_amount_not_negative")
        ),
        sa.CheckConstraint(
            "(activity_type = 'deal_stage_changed') = (deal_stage IS NOT NULL)",
            name=op.f("ck_sales_activities_stage_only_on_stage_change"),
        ),
        sa.CheckConstraint(
            "activity_type <> 'deal_stage_changed' OR amount_cents IS NOT NULL",
            name=op.f("ck_sales_activities_stage_change_has_amount"),
        ),
        sa.CheckConstraint(
            "activity_type <> 'email_sent' OR template_id IS NOT NULL",
            name=op.f("ck_sales_activities_email_sent_has_template"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sales_activities")),
    )
    op.create_index("ix_sales_activities_workspace_occurred", "sales_activities", ["workspace_id", "occurred_at"])
    op.create_index("ix_sales_activities_workspace_ingested", "sales_activities", ["workspace_id", "ingested_at"])
    op.create_index(
        "ix_sales_activities_workspace_lead", "sales_activities", ["workspace_id", "lead_id", "occurred_at"]
    )
    op.create_index("ix_sales_activities_rep", "sales_activities", ["rep_id"])

    op.create_table(
        "ai_salesboard_metrics",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("rep_id", sa.BigInteger(), nullable=False),
        sa.Column("metric_date", sa.Date(), nullable=False),
        *[_zero(name, sa.BigInteger() if name.endswith("_cents") else sa.Integer()) for name in BOARD_COUNTS],
        *[_zero(name, sa.Float()) for name in BOARD_SCORES[:6]],
        _zero("team_size", sa.Integer()),
        *[_zero(name, sa.Float()) for name in BOARD_SCORES[6:]],
        sa.Column("strengths", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'::text[]"), nullable=False),
        sa.Column("opportunities", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'::text[]"), nullable=False),
        sa.Column(
            "coaching_recommendations", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
        sa.Column("coaching_source", sa.Enum(*COACHING_SOURCES, name="coaching_source"), nullable=True),
        sa.Column("coaching_input_hash", sa.String(64), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_ai_salesboard_metrics_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rep_id"],
            ["team_members.id"],
            name=op.f("fk_ai_salesboard_metrics_rep_id_team_members"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "workspace_id",
            "rep_id",
            "metric_date",
            name=op.f("uq_ai_salesboard_metrics_workspace_id_rep_id_metric_date"),
        ),
        sa.CheckConstraint("performance_score BETWEEN 0 AND 100", name=op.f("ck_ai_salesboard_metrics_score_in_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ai_salesboard_metrics")),
    )
    op.create_index("ix_ai_salesboard_metrics_workspace_date", "ai_salesboard_metrics", ["workspace_id", "metric_date"])
    op.create_index("ix_ai_salesboard_metrics_rep", "ai_salesboard_metrics", ["rep_id"])

    op.create_table(
        "sales_rep_days",
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("metric_date", sa.Date(), nullable=False),
        sa.Column("rep_id", sa.BigInteger(), nullable=False),
        *[sa.Column(name, sa.Integer(), nullable=False) for name in ROLLUP_COUNTS],
        sa.Column("won_value_cents", sa.BigInteger(), nullable=False),
        sa.Column("pipeline_change_cents", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_sales_rep_days_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rep_id"], ["team_members.id"], name=op.f("fk_sales_rep_days_rep_id_team_members"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("workspace_id", "metric_date", "rep_id", name=op.f("pk_sales_rep_days")),
    )
    op.create_index("ix_sales_rep_days_rep", "sales_rep_days", ["rep_id"])

    op.create_table(
        "salesboard_rollups",
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("covered_from", sa.Date(), nullable=False),
        sa.Column("rolled_up_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("board_dirty_from", sa.Date(), nullable=True),
        sa.Column("board_computed_through", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_salesboard_rollups_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_salesboard_rollups")),
    )

    op.create_table(
        "salesboard_syncs",
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("rep_scope", sa.BigInteger(), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_salesboard_syncs_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "rep_scope", name=op.f("pk_salesboard_syncs")),
    )

    op.create_table(
        "adaptive_ai_configs",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("min_sample_size", sa.Integer(), server_default="30", nullable=False),
        sa.Column("lookback_days", sa.Integer(), server_default="90", nullable=False),
        sa.Column("learned_patterns", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("best_templates", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("baseline_reply_rate", sa.Float(), nullable=True),
        sa.Column("baseline_meeting_rate", sa.Float(), nullable=True),
        sa.Column("initial_success_rate", sa.Float(), nullable=True),
        sa.Column("current_success_rate", sa.Float(), nullable=True),
        sa.Column("improvement", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("samples_analyzed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("learning_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_learned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_adaptive_ai_configs_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("workspace_id", name=op.f("uq_adaptive_ai_configs_workspace_id")),
        sa.CheckConstraint("min_sample_size >= 1", name=op.f("ck_adaptive_ai_configs_min_sample_positive")),
        sa.CheckConstraint("lookback_days BETWEEN 1 AND 730", name=op.f("ck_adaptive_ai_configs_lookback_in_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adaptive_ai_configs")),
    )


def downgrade() -> None:
    op.drop_table("adaptive_ai_configs")
    op.drop_table("salesboard_syncs")
    op.drop_table("salesboard_rollups")
    op.drop_index("ix_sales_rep_days_rep", table_name="sales_rep_days")
    op.drop_table("sales_rep_days")
    op.drop_index("ix_ai_salesboard_metrics_rep", table_name="ai_salesboard_metrics")
    op.drop_index("ix_ai_salesboard_metrics_workspace_date", table_name="ai_salesboard_metrics")
    op.drop_table("ai_salesboard_metrics")
    op.drop_index("ix_sales_activities_rep", table_name="sales_activities")
    op.drop_index("ix_sales_activities_workspace_lead", table_name="sales_activities")
    op.drop_index("ix_sales_activities_workspace_ingested", table_name="sales_activities")
    op.drop_index("ix_sales_activities_workspace_occurred", table_name="sales_activities")
    op.drop_table("sales_activities")
    for enum_name in ("coaching_source", "deal_stage", "title_seniority", "company_size", "sales_activity_type"):
        sa.Enum(name=enum_name).drop(op.get_bind(), checkfirst=True)
