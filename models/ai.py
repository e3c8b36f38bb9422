"""AI features: knowledge documents, voice actions, the safety console's log, and the LLM result cache."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
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


class KnowledgeDocType(enum.StrEnum):
    BATTLE_CARD = "battle_card"
    PLAYBOOK = "playbook"
    OBJECTION_HANDLER = "objection_handler"
    FAQ = "faq"


class KnowledgeSource(enum.StrEnum):
    CALL = "call"
    EMAIL = "email"
    MEETING = "meeting"
    MANUAL = "manual"


class AIEngine(enum.StrEnum):
    OPENAI = "openai"
    OFFLINE = "offline"


class VoiceInputKind(enum.StrEnum):
    TEXT = "text"
    AUDIO = "audio"


class VoiceActionStatus(enum.StrEnum):
    # Extracted, waiting for a person: nothing is pushed to a CRM or calendar before review.
    PENDING_REVIEW = "pending_review"
    APPROVED = "approved"
    EDITED = "edited"
    REJECTED = "rejected"


class SafetyChannel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"
    LINKEDIN = "linkedin"
    CHAT = "chat"
    CALL_SCRIPT = "call_script"
    OTHER = "other"


class SafetyCategory(enum.StrEnum):
    PII = "pii"
    PROFANITY = "profanity"
    SPAM = "spam"
    CAN_SPAM = "can_spam"
    GDPR = "gdpr"


class SafetySeverity(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class SafetyAction(enum.StrEnum):
    ALLOW = "allow"
    FLAG = "flag"
    MODIFY = "modify"
    BLOCK = "block"


class SafetyReviewStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"


class KnowledgeDocument(Base):
    """A document for the sales team, written by a person or generated from a transcript (`ai_generated`)."""

    __tablename__ = "knowledge_documents"
    __table_args__ = (
        # The same transcript and type never make two documents (a retry or a duplicate job finds the first).
        Index(
            "uq_knowledge_documents_transcript_type",
            "workspace_id",
            "transcript_hash",
            "doc_type",
            unique=True,
            postgresql_where=text("transcript_hash IS NOT NULL"),
        ),
        Index("ix_knowledge_documents_workspace_type_created", "workspace_id", "doc_type", "created_at"),
        CheckConstraint("confidence IS NULL OR (confidence >= 0 AND confidence <= 1)", name="confidence_range"),
        CheckConstraint("view_count >= 0", name="view_count_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    doc_type: Mapped[KnowledgeDocType] = mapped_column(pg_enum(KnowledgeDocType, "knowledge_doc_type"))
    title: Mapped[str] = mapped_column(String(300))
    # Sections per type (tasks/ai/schemas.py): items cite transcript turns by index.
    content: Mapped[dict[str, Any]] = mapped_column(JSONB)
    source: Mapped[KnowledgeSource] = mapped_column(pg_enum(KnowledgeSource, "knowledge_source"))
    # The turns the items came from ({index, speaker, text}), so a reader can check a claim against the call.
    source_turns: Mapped[list[Any]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    voice_action_id: Mapped[int | None] = mapped_column(ForeignKey("voice_actions.id", ondelete="SET NULL"))
    transcript_hash: Mapped[str | None] = mapped_column(String(64))
    confidence: Mapped[float | None] = mapped_column(Float)
    ai_generated: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    view_count: Mapped[int] = mapped_column(Integer, server_default="0")
    engine: Mapped[AIEngine | None] = mapped_column(pg_enum(AIEngine, "ai_engine"))
    model: Mapped[str | None] = mapped_column(String(100))
    prompt_version: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()


class VoiceAction(Base):
    """A call's transcript and the actions extracted from it, waiting for review in the main app."""

    __tablename__ = "voice_actions"
    __table_args__ = (
        # One row per (transcript, call start, participants): a retried or duplicated job finds the first.
        UniqueConstraint("workspace_id", "input_hash"),
        Index("ix_voice_actions_workspace_status_created", "workspace_id", "status", "created_at"),
        # A review is a state change with a time: decided <=> reviewed_at set. The reviewer may later become NULL
        # (the member was removed: ON DELETE SET NULL) while the time of the decision stays on record.
        CheckConstraint("(status = 'pending_review') = (reviewed_at IS NULL)", name="decided_iff_reviewed"),
        CheckConstraint("reviewed_by IS NULL OR reviewed_at IS NOT NULL", name="reviewer_has_time"),
        CheckConstraint("(status = 'edited') = (edited_actions IS NOT NULL)", name="edited_has_actions"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    input_kind: Mapped[VoiceInputKind] = mapped_column(pg_enum(VoiceInputKind, "voice_input_kind"))
    # [{index, speaker, text, start_seconds}]
    transcript: Mapped[list[Any]] = mapped_column(JSONB)
    transcript_hash: Mapped[str] = mapped_column(String(64))
    input_hash: Mapped[str] = mapped_column(String(64))
    call_started_at: Mapped[datetime]
    participants: Mapped[list[Any]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    # As extracted: [{type, title, description, owner, owner_email, due_at, due_phrase, confidence, evidence,
    # turn_index, warnings}]. Never rewritten, so what the engine proposed stays beside what a person decided.
    actions: Mapped[list[Any]] = mapped_column(JSONB)
    # The reviewer's version of the actions (status `edited` only; tasks/ai/schemas.py ReviewedAction).
    edited_actions: Mapped[list[Any] | None] = mapped_column(JSONB)
    status: Mapped[VoiceActionStatus] = mapped_column(
        pg_enum(VoiceActionStatus, "voice_action_status"), server_default=VoiceActionStatus.PENDING_REVIEW.value
    )
    engine: Mapped[AIEngine] = mapped_column(pg_enum(AIEngine, "ai_engine"))
    model: Mapped[str | None] = mapped_column(String(100))
    prompt_version: Mapped[str | None] = mapped_column(String(100))
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("team_members.id", ondelete="SET NULL"))
    reviewed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()


class AISafetyLog(Base):
    """One finding of one content scan: what was found (never the matched text itself), how bad, what was done."""

    __tablename__ = "ai_safety_logs"
    __table_args__ = (
        # A scan is keyed by its job id; its findings are numbered, so a re-run inserts nothing twice.
        UniqueConstraint("scan_id", "ordinal"),
        Index("ix_ai_safety_logs_workspace_created", "workspace_id", "created_at"),
        Index(
            "ix_ai_safety_logs_pending_review",
            "workspace_id",
            "created_at",
            postgresql_where=text("review_status = 'pending'"),
        ),
        CheckConstraint("(review_status = 'pending') = (reviewed_at IS NULL)", name="decided_iff_reviewed"),
        CheckConstraint("reviewed_by IS NULL OR reviewed_at IS NOT NULL", name="reviewer_has_time"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    scan_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    ordinal: Mapped[int] = mapped_column(Integer)
    channel: Mapped[SafetyChannel] = mapped_column(pg_enum(SafetyChannel, "safety_channel"))
    category: Mapped[SafetyCategory] = mapped_column(pg_enum(SafetyCategory, "safety_category"))
    finding_type: Mapped[str] = mapped_column(String(50))
    severity: Mapped[SafetySeverity] = mapped_column(pg_enum(SafetySeverity, "safety_severity"))
    action: Mapped[SafetyAction] = mapped_column(pg_enum(SafetyAction, "safety_action"))
    # Span offsets, scores, the rules that fired; masked previews only.
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    content_hash: Mapped[str] = mapped_column(String(64))
    review_status: Mapped[SafetyReviewStatus] = mapped_column(
        pg_enum(SafetyReviewStatus, "safety_review_status"), server_default=SafetyReviewStatus.PENDING.value
    )
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("team_members.id", ondelete="SET NULL"))
    reviewed_at: Mapped[datetime | None]
    review_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()


class LLMCacheEntry(Base):
    """A validated model answer, keyed so that a retry or a duplicate job never pays for the same call twice."""

    __tablename__ = "llm_cache_entries"
    __table_args__ = (
        # Named by hand: the conventional name would pass PostgreSQL's 63-character limit.
        UniqueConstraint(
            "workspace_id", "task", "model", "prompt_version", "input_hash", name="uq_llm_cache_entries_key"
        ),
        Index("ix_llm_cache_entries_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(100))
    prompt_version: Mapped[str] = mapped_column(String(100))
    input_hash: Mapped[str] = mapped_column(String(64))
    output: Mapped[dict[str, Any]] = mapped_column(JSONB)
    response_model: Mapped[str | None] = mapped_column(String(100))
    prompt_tokens: Mapped[int] = mapped_column(Integer, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = created_at_column()
