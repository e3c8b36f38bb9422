"""AI features: knowledge documents, voice actions, the safety console's log and the LLM result cache.

Revision ID: 0003_ai
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_ai"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENUMS: dict[str, tuple[str, ...]] = {
    "knowledge_doc_type": ("battle_card", "playbook", "objection_handler", "faq"),
    "knowledge_source": ("call", "email", "meeting", "manual"),
    "ai_engine": ("openai", "offline"),
    "voice_input_kind": ("text", "audio"),
    "voice_action_status": ("pending_review", "approved", "edited", "rejected"),
    "safety_channel": ("email", "sms", "linkedin", "chat", "call_script", "other"),
    "safety_category": ("pii", "profanity", "spam", "can_spam", "gdpr"),
    "safety_severity": ("low", "medium", "high", "critical"),
    "safety_action": ("allow", "flag", "modify", "block"),
    "safety_review_status": ("pending", "confirmed", "dismissed"),
}


def _enum(name: str) -> postgresql.ENUM:
    # Created once up front; create_type=False keeps create_table from creating it a second time.
    return postgresql.ENUM(*ENUMS[name], name=name, create_type=False)


def _now() -> sa.TextClause:
    return sa.text("now()")


def _jsonb() -> postgresql.JSONB:
    return postgresql.JSONB(astext_type=sa.Text())


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"], ["workspaces.id"], name=f"fk_{table}_workspace_id_workspaces", ondelete="CASCADE"
    )


def _reviewer_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["reviewed_by"], ["team_members.id"], name=f"fk_{table}_reviewed_by_team_members", ondelete="SET NULL"
    )


def upgrade() -> None:
    bind = op.get_bind()
    for name, values in ENUMS.items():
        postgresql.ENUM(*values, name=name).create(bind, checkfirst=False)

    op.create_table(
        "voice_actions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("input_kind", _enum("voice_input_kind"), nullable=False),
        sa.Column("transcript", _jsonb(), nullable=False),
        sa.Column("transcript_hash", sa.String(length=64), nullable=False),
        sa.Column("input_hash", sa.String(length=64), nullable=False),
        sa.Column("call_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("participants", _jsonb(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("actions", _jsonb(), nullable=False),
        sa.Column("edited_actions", _jsonb(), nullable=True),
        sa.Column("status", _enum("voice_action_status"), server_default="pending_review", nullable=False),
        sa.Column("engine", _enum("ai_engine"), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=True),
        sa.Column("prompt_version", sa.String(length=100), nullable=True),
        sa.Column("reviewed_by", sa.BigInteger(), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.CheckConstraint(
            "(status = 'pending_review') = (reviewed_at IS NULL)", name=op.f("ck_voice_actions_decided_iff_reviewed")
        ),
        sa.CheckConstraint(
            "reviewed_by IS NULL OR reviewed_at IS NOT NULL", name=op.f("ck_voice_actions_reviewer_has_time")
        ),
        sa.CheckConstraint(
            "(status = 'edited') = (edited_actions IS NOT NULL)", name=op.f("ck_voice_actions_edited_has_actions")
        ),
        _reviewer_fk("voice_actions"),
        _workspace_fk("voice_actions"),
        sa.PrimaryKeyConstraint("id", name="pk_voice_actions"),
        sa.UniqueConstraint("workspace_id", "input_hash", name="uq_voice_actions_workspace_id_input_hash"),
    )
    op.create_index(
        "ix_voice_actions_workspace_status_created", "voice_actions", ["workspace_id", "status", "created_at"]
    )

    op.create_table(
        "knowledge_documents",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("doc_type", _enum("knowledge_doc_type"), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("content", _jsonb(), nullable=False),
        sa.Column("source", _enum("knowledge_source"), nullable=False),
        sa.Column("source_turns", _jsonb(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("voice_action_id", sa.BigInteger(), nullable=True),
        sa.Column("transcript_hash", sa.String(length=64), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("ai_generated", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("view_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("engine", _enum("ai_engine"), nullable=True),
        sa.Column("model", sa.String(length=100), nullable=True),
        sa.Column("prompt_version", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.CheckConstraint(
            "confidence IS NULL OR (confidence >= 0 AND confidence <= 1)",
            name=op.f("ck_knowledge_documents_confidence_range"),
        ),
        sa.CheckConstraint("view_count >= 0", name=op.f("ck_knowledge_documents_view_count_not_negative")),
        sa.ForeignKeyConstraint(
            ["voice_action_id"],
            ["voice_actions.id"],
            name="fk_knowledge_documents_voice_action_id_voice_actions",
            ondelete="SET NULL",
        ),
        _workspace_fk("knowledge_documents"),
        sa.PrimaryKeyConstraint("id", name="pk_knowledge_documents"),
    )
    op.create_index(
        "ix_knowledge_documents_workspace_type_created",
        "knowledge_documents",
        ["workspace_id", "doc_type", "created_at"],
    )
    op.create_index(
        "uq_knowledge_documents_transcript_type",
        "knowledge_documents",
        ["workspace_id", "transcript_hash", "doc_type"],
        unique=True,
        postgresql_where=sa.text("transcript_hash IS NOT NULL"),
    )

    op.create_table(
        "ai_safety_logs",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("scan_id", sa.UUID(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("channel", _enum("safety_channel"), nullable=False),
        sa.Column("category", _enum("safety_category"), nullable=False),
        sa.Column("finding_type", sa.String(length=50), nullable=False),
        sa.Column("severity", _enum("safety_severity"), nullable=False),
        sa.Column("action", _enum("safety_action"), nullable=False),
        sa.Column("detail", _jsonb(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("review_status", _enum("safety_review_status"), server_default="pending", nullable=False),
        sa.Column("reviewed_by", sa.BigInteger(), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.CheckConstraint(
            "(review_status = 'pending') = (reviewed_at IS NULL)", name=op.f("ck_ai_safety_logs_decided_iff_reviewed")
        ),
        sa.CheckConstraint(
            "reviewed_by IS NULL OR reviewed_at IS NOT NULL", name=op.f("ck_ai_safety_logs_reviewer_has_time")
        ),
        _reviewer_fk("ai_safety_logs"),
        _workspace_fk("ai_safety_logs"),
        sa.PrimaryKeyConstraint("id", name="pk_ai_safety_logs"),
        sa.UniqueConstraint("scan_id", "ordinal", name="uq_ai_safety_logs_scan_id_ordinal"),
    )
    op.create_index("ix_ai_safety_logs_workspace_created", "ai_safety_logs", ["workspace_id", "created_at"])
    op.create_index(
        "ix_ai_safety_logs_pending_review",
        "ai_safety_logs",
        ["workspace_id", "created_at"],
        postgresql_where=sa.text("review_status = 'pending'"),
    )

    op.create_table(
        "llm_cache_entries",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("task", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("prompt_version", sa.String(length=100), nullable=False),
        sa.Column("input_hash", sa.String(length=64), nullable=False),
        sa.Column("output", _jsonb(), nullable=False),
        sa.Column("response_model", sa.String(length=100), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("completion_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        _workspace_fk("llm_cache_entries"),
        sa.PrimaryKeyConstraint("id", name="pk_llm_cache_entries"),
        sa.UniqueConstraint(
            "workspace_id", "task", "model", "prompt_version", "input_hash", name="uq_llm_cache_entries_key"
        ),
    )
    op.create_index("ix_llm_cache_entries_created", "llm_cache_entries", ["created_at"])


def downgrade() -> None:
    op.drop_table("llm_cache_entries")
    op.drop_table("ai_safety_logs")
    op.drop_table("knowledge_documents")
    op.drop_table("voice_actions")
    bind = op.get_bind()
    for name in reversed(ENUMS):
        postgresql.ENUM(name=name).drop(bind, checkfirst=False)
