"""foundation: core tables (tenants, people, API keys, plans, subscriptions, usage) and the jobs ledger

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("code", sa.Enum("free", "starter", "professional", "enterprise", name="plan_tier"), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("price_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), server_default="USD", nullable=False),
        sa.Column("limits", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "overage_unit_cents",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("features", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=True),
        sa.Column("api_rate_per_second", sa.Integer(), nullable=False),
        sa.Column("api_burst", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_plans")),
    )
    op.create_table(
        "workspaces",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
        sa.UniqueConstraint("name", name=op.f("uq_workspaces_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_api_keys_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_index(op.f("ix_api_keys_workspace_id"), "api_keys", ["workspace_id"], unique=False)
    op.create_table(
        "jobs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=True),
        sa.Column("task", sa.String(length=100), nullable=False),
        sa.Column(
            "args", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column(
            "status",
            sa.Enum("queued", "running", "retrying", "succeeded", "failed", "cancelled", name="job_status"),
            server_default="queued",
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lost_runs", sa.Integer(), server_default="0", nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("args_hash", sa.String(length=64), nullable=True),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("parent_id", sa.UUID(), nullable=True),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_jobs_attempts_not_negative")),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_jobs_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(
        "ix_jobs_finished_at",
        "jobs",
        ["finished_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('succeeded', 'failed', 'cancelled')"),
    )
    op.create_index(
        "ix_jobs_failed_task", "jobs", ["task"], unique=False, postgresql_where=sa.text("status = 'failed'")
    )
    op.create_index(
        "ix_jobs_sweep",
        "jobs",
        ["run_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'retrying', 'running')"),
    )
    op.create_index("ix_jobs_workspace_created", "jobs", ["workspace_id", "enqueued_at", "id"], unique=False)
    op.create_index(
        "uq_jobs_workspace_idempotency_key",
        "jobs",
        ["workspace_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "plan_code", sa.Enum("free", "starter", "professional", "enterprise", name="plan_tier"), nullable=False
        ),
        sa.Column(
            "status", sa.Enum("trialing", "active", "past_due", "cancelled", name="subscription_status"), nullable=False
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("billing_anchor_day", sa.Integer(), nullable=False),
        sa.Column("current_period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("current_period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trial_ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "trial_plan_code", sa.Enum("free", "starter", "professional", "enterprise", name="plan_tier"), nullable=True
        ),
        sa.Column("has_payment_method", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("cancel_at_period_end", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("billing_anchor_day BETWEEN 1 AND 31", name=op.f("ck_subscriptions_anchor_day_in_month")),
        sa.CheckConstraint("current_period_end > current_period_start", name=op.f("ck_subscriptions_period_not_empty")),
        sa.ForeignKeyConstraint(["plan_code"], ["plans.code"], name=op.f("fk_subscriptions_plan_code_plans")),
        sa.ForeignKeyConstraint(
            ["trial_plan_code"], ["plans.code"], name=op.f("fk_subscriptions_trial_plan_code_plans")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_subscriptions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
    )
    op.create_index("ix_subscriptions_period_end", "subscriptions", ["current_period_end"], unique=False)
    op.create_index(
        "ix_subscriptions_trial_ends",
        "subscriptions",
        ["trial_ends_at"],
        unique=False,
        postgresql_where=sa.text("status = 'trialing'"),
    )
    op.create_index(op.f("ix_subscriptions_workspace_id"), "subscriptions", ["workspace_id"], unique=False)
    op.create_table(
        "team_members",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "role",
            sa.Enum("owner", "admin", "member", "viewer", name="team_role"),
            server_default="member",
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_active_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_team_members_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team_members")),
        sa.UniqueConstraint("workspace_id", "email", name=op.f("uq_team_members_workspace_id_email")),
    )
    op.create_index(op.f("ix_team_members_workspace_id"), "team_members", ["workspace_id"], unique=False)
    op.create_table(
        "quota_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "metric",
            sa.Enum(
                "emails_sent", "leads_created", "campaigns_created", "api_calls", "ai_generations", name="usage_metric"
            ),
            nullable=False,
        ),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_status", sa.Enum("ok", "warning", "exceeded", name="quota_status"), nullable=False),
        sa.Column("to_status", sa.Enum("ok", "warning", "exceeded", name="quota_status"), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("limit", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_quota_events_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_quota_events_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quota_events")),
        sa.UniqueConstraint(
            "subscription_id",
            "metric",
            "period_start",
            "to_status",
            name=op.f("uq_quota_events_subscription_id_metric_period_start_to_status"),
        ),
    )
    op.create_index(op.f("ix_quota_events_workspace_id"), "quota_events", ["workspace_id"], unique=False)
    op.create_table(
        "usage_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "metric",
            sa.Enum(
                "emails_sent", "leads_created", "campaigns_created", "api_calls", "ai_generations", name="usage_metric"
            ),
            nullable=False,
        ),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_usage_events_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_usage_events_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_usage_events_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_usage_events_event_id")),
    )
    op.create_index(
        "ix_usage_events_subscription_metric_time",
        "usage_events",
        ["subscription_id", "metric", "occurred_at"],
        unique=False,
    )
    op.create_index(op.f("ix_usage_events_workspace_id"), "usage_events", ["workspace_id"], unique=False)
    op.create_table(
        "usage_metrics",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "metric",
            sa.Enum(
                "emails_sent", "leads_created", "campaigns_created", "api_calls", "ai_generations", name="usage_metric"
            ),
            nullable=False,
        ),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quantity", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "quota_status",
            sa.Enum("ok", "warning", "exceeded", name="quota_status"),
            server_default="ok",
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_usage_metrics_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_usage_metrics_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_metrics")),
        sa.UniqueConstraint(
            "subscription_id",
            "metric",
            "period_start",
            name=op.f("uq_usage_metrics_subscription_id_metric_period_start"),
        ),
    )
    op.create_index(op.f("ix_usage_metrics_workspace_id"), "usage_metrics", ["workspace_id"], unique=False)
    # ### end Alembic commands ###

    # The spec's four tiers as data (price in cents; a null limit is unlimited). Features follow the spec's table,
    # each tier including the ones below it. Rates are the enqueue API's token bucket per workspace.
    plans = sa.table(
        "plans",
        sa.column("code", postgresql.ENUM(name="plan_tier", create_type=False)),
        sa.column("name", sa.String),
        sa.column("price_cents", sa.Integer),
        sa.column("limits", postgresql.JSONB),
        sa.column("features", postgresql.JSONB),
        sa.column("seats", sa.Integer),
        sa.column("api_rate_per_second", sa.Integer),
        sa.column("api_burst", sa.Integer),
        sa.column("rank", sa.Integer),
    )
    basic = {"basic_ai": True, "email_support": True}
    starter = {**basic, "multi_channel": True, "priority_support": True}
    professional = {
        **starter,
        "ai_salesboard": True,
        "knowledge_fusion": True,
        "workflows": True,
        "support_24_7": True,
        "adaptive_outbound_ai": True,
    }
    enterprise = {
        **professional,
        "ai_safety": True,
        "voice_to_action": True,
        "custom_integrations": True,
        "dedicated_success_manager": True,
    }
    op.bulk_insert(
        plans,
        [
            {
                "code": "free",
                "name": "Free",
                "price_cents": 0,
                "limits": {"emails_sent": 100, "leads_created": 50, "campaigns_created": 1},
                "features": basic,
                "seats": 1,
                "api_rate_per_second": 5,
                "api_burst": 20,
                "rank": 0,
            },
            {
                "code": "starter",
                "name": "Starter",
                "price_cents": 4900,
                "limits": {"emails_sent": 5000, "leads_created": 1000, "campaigns_created": 10},
                "features": starter,
                "seats": 3,
                "api_rate_per_second": 20,
                "api_burst": 100,
                "rank": 1,
            },
            {
                "code": "professional",
                "name": "Professional",
                "price_cents": 29900,
                "limits": {"emails_sent": 50000, "leads_created": 10000, "campaigns_created": 100},
                "features": professional,
                "seats": 10,
                "api_rate_per_second": 100,
                "api_burst": 500,
                "rank": 2,
            },
            {
                "code": "enterprise",
                "name": "Enterprise",
                "price_cents": 99900,
                "limits": {"emails_sent": 500000, "leads_created": 100000, "campaigns_created": None},
                "features": enterprise,
                "seats": None,
                "api_rate_per_second": 500,
                "api_burst": 2000,
                "rank": 3,
            },
        ],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_usage_metrics_workspace_id"), table_name="usage_metrics")
    op.drop_table("usage_metrics")
    op.drop_index(op.f("ix_usage_events_workspace_id"), table_name="usage_events")
    op.drop_index("ix_usage_events_subscription_metric_time", table_name="usage_events")
    op.drop_table("usage_events")
    op.drop_index(op.f("ix_quota_events_workspace_id"), table_name="quota_events")
    op.drop_table("quota_events")
    op.drop_index(op.f("ix_team_members_workspace_id"), table_name="team_members")
    op.drop_table("team_members")
    op.drop_index(op.f("ix_subscriptions_workspace_id"), table_name="subscriptions")
    op.drop_index(
        "ix_subscriptions_trial_ends", table_name="subscriptions", postgresql_where=sa.text("status = 'trialing'")
    )
    op.drop_index("ix_subscriptions_period_end", table_name="subscriptions")
    op.drop_table("subscriptions")
    op.drop_index(
        "uq_jobs_workspace_idempotency_key",
        table_name="jobs",
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        postgresql_nulls_not_distinct=True,
    )
    op.drop_index("ix_jobs_workspace_created", table_name="jobs")
    op.drop_index(
        "ix_jobs_sweep", table_name="jobs", postgresql_where=sa.text("status IN ('queued', 'retrying', 'running')")
    )
    op.drop_index("ix_jobs_failed_task", table_name="jobs", postgresql_where=sa.text("status = 'failed'"))
    op.drop_table("jobs")
    op.drop_index(op.f("ix_api_keys_workspace_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("workspaces")
    op.drop_table("plans")
    # ### end Alembic commands ###

    for enum_name in ("job_status", "plan_tier", "quota_status", "subscription_status", "team_role", "usage_metric"):
        sa.Enum(name=enum_name).drop(op.get_bind(), checkfirst=True)
