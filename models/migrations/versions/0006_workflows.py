"""Workflow maps, runs, node runs (execution history), side effects and per-workspace workflow settings.

Revision ID: 0006_workflows
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_workflows"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUN_STATUS = ("running", "succeeded", "failed")
NODE_STATUS = ("pending", "running", "waiting", "succeeded", "skipped", "failed", "cancelled")
NODE_TYPE = ("trigger", "condition", "action", "wait", "branch", "join")
ACTION_KIND = ("send_email", "create_task", "update_crm", "webhook", "notify")


def _enum(name: str, values: Sequence[str]) -> postgresql.ENUM:
    # Created once up front; create_type=False keeps create_table from creating it a second time.
    return postgresql.ENUM(*values, name=name, create_type=False)


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    bind = op.get_bind()
    for name, values in (
        ("workflow_run_status", RUN_STATUS),
        ("workflow_node_status", NODE_STATUS),
        ("workflow_node_type", NODE_TYPE),
        ("workflow_action_kind", ACTION_KIND),
    ):
        postgresql.ENUM(*values, name=name).create(bind, checkfirst=False)

    op.create_table(
        "workflow_settings",
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("allow_private_webhooks", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_workflow_settings_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name="pk_workflow_settings"),
    )

    op.create_table(
        "workflow_maps",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("definition", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.CheckConstraint("version >= 1", name="ck_workflow_maps_version_positive"),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_workflow_maps_workspace_id_workspaces", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_maps"),
        sa.UniqueConstraint("workspace_id", "name", name="uq_workflow_maps_workspace_id_name"),
    )
    op.create_index("ix_workflow_maps_workspace_id", "workflow_maps", ["workspace_id"])

    op.create_table(
        "workflow_runs",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("workflow_id", sa.BigInteger(), nullable=False),
        sa.Column("workflow_version", sa.Integer(), nullable=False),
        sa.Column("definition", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("trigger_payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("trigger_job_id", sa.UUID(), nullable=True),
        sa.Column("status", _enum("workflow_run_status", RUN_STATUS), server_default="running", nullable=False),
        sa.Column("nodes_total", sa.Integer(), nullable=False),
        sa.Column("nodes_done", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "nodes_done >= 0 AND nodes_done <= nodes_total", name="ck_workflow_runs_nodes_done_in_range"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_workflow_runs_workspace_id_workspaces", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflow_maps.id"],
            name="fk_workflow_runs_workflow_id_workflow_maps",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_runs"),
        sa.UniqueConstraint("trigger_job_id", name="uq_workflow_runs_trigger_job_id"),
    )
    op.create_index("ix_workflow_runs_workspace_id", "workflow_runs", ["workspace_id"])
    op.create_index("ix_workflow_runs_workflow_created", "workflow_runs", ["workflow_id", "created_at"])
    op.create_index(
        "ix_workflow_runs_running",
        "workflow_runs",
        ["created_at"],
        postgresql_where=sa.text("status = 'running'"),
    )

    op.create_table(
        "workflow_node_runs",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("node_type", _enum("workflow_node_type", NODE_TYPE), nullable=False),
        sa.Column("status", _enum("workflow_node_status", NODE_STATUS), server_default="pending", nullable=False),
        sa.Column("input", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("output", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("arrivals", sa.Integer(), server_default="0", nullable=False),
        sa.Column("taken_arrivals", sa.Integer(), server_default="0", nullable=False),
        sa.Column("resume_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("attempts >= 0", name="ck_workflow_node_runs_attempts_not_negative"),
        sa.CheckConstraint(
            "arrivals >= taken_arrivals AND taken_arrivals >= 0", name="ck_workflow_node_runs_arrivals_consistent"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_workflow_node_runs_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["workflow_runs.id"], name="fk_workflow_node_runs_run_id_workflow_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_node_runs"),
        sa.UniqueConstraint("run_id", "node_id", name="uq_workflow_node_runs_run_id_node_id"),
    )
    op.create_index("ix_workflow_node_runs_workspace_id", "workflow_node_runs", ["workspace_id"])

    op.create_table(
        "workflow_side_effects",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("node_run_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", _enum("workflow_action_kind", ACTION_KIND), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_workflow_side_effects_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["workflow_runs.id"], name="fk_workflow_side_effects_run_id_workflow_runs", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["node_run_id"],
            ["workflow_node_runs.id"],
            name="fk_workflow_side_effects_node_run_id_workflow_node_runs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_side_effects"),
        sa.UniqueConstraint("node_run_id", name="uq_workflow_side_effects_node_run_id"),
    )
    op.create_index("ix_workflow_side_effects_run_id", "workflow_side_effects", ["run_id"])
    op.create_index(
        "ix_workflow_side_effects_workspace_kind_created",
        "workflow_side_effects",
        ["workspace_id", "kind", "created_at"],
    )


def downgrade() -> None:
    op.drop_table("workflow_side_effects")
    op.drop_table("workflow_node_runs")
    op.drop_table("workflow_runs")
    op.drop_table("workflow_maps")
    op.drop_table("workflow_settings")
    bind = op.get_bind()
    for name in ("workflow_action_kind", "workflow_node_type", "workflow_node_status", "workflow_run_status"):
        postgresql.ENUM(name=name).drop(bind, checkfirst=False)
