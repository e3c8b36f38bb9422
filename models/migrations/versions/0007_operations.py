"""operations: dead letters (poison messages set aside by the workers) and backfill checkpoints

Revision ID: 0007_operations
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_operations"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEAD_LETTER_REASONS = ("undecodable", "unknown_task", "bad_arguments", "malformed")


def upgrade() -> None:
    reason = postgresql.ENUM(*DEAD_LETTER_REASONS, name="dead_letter_reason", create_type=False)
    reason.create(op.get_bind(), checkfirst=False)
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", reason, nullable=False),
        sa.Column("task", sa.String(length=200), nullable=True),
        sa.Column("task_id", sa.String(length=200), nullable=True),
        sa.Column("queue", sa.String(length=100), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=True),
        sa.Column("body_bytes", sa.Integer(), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_dead_letters_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index("ix_dead_letters_received", "dead_letters", ["received_at"], unique=False)
    op.create_index(op.f("ix_dead_letters_task_id"), "dead_letters", ["task_id"], unique=False)
    op.create_index(op.f("ix_dead_letters_workspace_id"), "dead_letters", ["workspace_id"], unique=False)

    op.create_table(
        "backfill_runs",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("cursor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("enqueued", sa.Integer(), server_default="0", nullable=False),
        sa.Column("batches", sa.Integer(), server_default="0", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backfill_runs")),
        sa.UniqueConstraint(
            "kind", "period_start", "period_end", name=op.f("uq_backfill_runs_kind_period_start_period_end")
        ),
    )


def downgrade() -> None:
    op.drop_table("backfill_runs")
    op.drop_index(op.f("ix_dead_letters_workspace_id"), table_name="dead_letters")
    op.drop_index(op.f("ix_dead_letters_task_id"), table_name="dead_letters")
    op.drop_index("ix_dead_letters_received", table_name="dead_letters")
    op.drop_table("dead_letters")
    postgresql.ENUM(name="dead_letter_reason").drop(op.get_bind(), checkfirst=False)
