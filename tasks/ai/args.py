"""Argument models of the AI tasks (validated by the enqueue API and again by the worker)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, model_validator

from models.ai import KnowledgeSource, SafetyChannel
from tasks.ai.safety import ScanContext
from tasks.ai.schemas import DocType
from tasks.ai.transcript import TurnIn
from tasks.ai.voice import AudioIn, Participant
from workers.contracts import TaskArgs, task_args

MAX_TRANSCRIPT_CHARS = 400_000
MAX_TURNS = 5_000


def _nul_path(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return f"{path}.{key!r}" if path else repr(key)
        found = _nul_path(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


class AIArgs(TaskArgs):
    """Base of the AI tasks' arguments: no NUL characters anywhere.

    PostgreSQL cannot store U+0000 in text or JSONB, so such a transcript or message could not even be written to
    the ledger; refused here, it is a 422 naming the field instead of a database error quoting the text."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul_characters(cls, data: Any) -> Any:
        found = _nul_path(data, "")
        if found is not None:
            raise ValueError(f"{found} contains a NUL character (U+0000), which cannot be stored")
        return data


def _check_transcript(transcript: list[TurnIn] | str | None) -> None:
    if isinstance(transcript, str) and len(transcript) > MAX_TRANSCRIPT_CHARS:
        raise ValueError(f"transcript longer than {MAX_TRANSCRIPT_CHARS} characters")
    if isinstance(transcript, list) and len(transcript) > MAX_TURNS:
        raise ValueError(f"transcript has more than {MAX_TURNS} turns")


@task_args("ai.generate_knowledge_document")
class GenerateKnowledgeDocumentArgs(AIArgs):
    workspace_id: int
    # Turns [{speaker, text, start_seconds?}] or "Speaker: text" lines; or the id of a stored voice_actions row.
    transcript: list[TurnIn] | str | None = None
    transcript_id: int | None = Field(default=None, ge=1)
    doc_type: DocType
    source: KnowledgeSource = KnowledgeSource.CALL

    @model_validator(mode="after")
    def _one_transcript(self) -> GenerateKnowledgeDocumentArgs:
        if (self.transcript is None) == (self.transcript_id is None):
            raise ValueError("give exactly one of transcript or transcript_id")
        _check_transcript(self.transcript)
        return self


@task_args("ai.extract_voice_actions")
class ExtractVoiceActionsArgs(AIArgs):
    workspace_id: int
    transcript: list[TurnIn] | str | None = None
    # Audio instead of text: transcribed first through the OpenAI-compatible endpoint (not available offline).
    audio: AudioIn | None = None
    call_started_at: datetime
    participants: list[Participant] = Field(default_factory=list, max_length=50)

    @model_validator(mode="before")
    @classmethod
    def _names_as_participants(cls, data: Any) -> Any:
        # Participants may be given as plain names.
        if isinstance(data, dict) and isinstance(data.get("participants"), list):
            data = {**data, "participants": [{"name": p} if isinstance(p, str) else p for p in data["participants"]]}
        return data

    @model_validator(mode="after")
    def _one_input(self) -> ExtractVoiceActionsArgs:
        if (self.transcript is None) == (self.audio is None):
            raise ValueError("give exactly one of transcript or audio")
        if self.call_started_at.tzinfo is None:
            raise ValueError("call_started_at must include a timezone offset")
        _check_transcript(self.transcript)
        return self


@task_args("ai.scan_content")
class ScanContentArgs(AIArgs):
    workspace_id: int
    content: str = Field(min_length=1, max_length=200_000)
    channel: SafetyChannel = SafetyChannel.EMAIL
    context: ScanContext = Field(default_factory=ScanContext)


@task_args("ai.safety_stats")
class SafetyStatsArgs(AIArgs):
    workspace_id: int
    days: int = Field(default=30, ge=1, le=366)
