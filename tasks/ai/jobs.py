"""Celery faces of the AI jobs (the `ai` queue, served by a thread-pool worker: LLM calls wait on the network)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, StatementError

from tasks.ai import console, knowledge, voice
from tasks.ai.args import (
    ExtractVoiceActionsArgs,
    GenerateKnowledgeDocumentArgs,
    SafetyStatsArgs,
    ScanContentArgs,
)
from workers.app import app
from workers.jobtask import TRANSIENT_ERRORS, JobTask
from workers.queues import Queue

# Each retry may make up to LLM_MAX_ATTEMPTS calls of its own, so the ledger-level bound stays small.
AI_MAX_RETRIES = 3


class ContentFreeError(RuntimeError):
    """An unexpected failure, described by its kind and where it happened, never by the data it was handling."""


def _transient(exc: StatementError) -> bool:
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    return isinstance(exc, DBAPIError) and (exc.connection_invalidated or isinstance(exc.orig, TRANSIENT_ERRORS))


@contextmanager
def content_free_errors() -> Iterator[None]:
    """Unexpected errors leave an AI job without the text they carry.

    The job base writes an error's message to the ledger and its traceback to the log. pydantic quotes the
    offending `input_value`, and SQLAlchemy the statement's parameters and PostgreSQL's DETAIL/CONTEXT lines: here
    that is transcript or message text. Transient database errors keep their type (the job base retries on it)
    with the parameters hidden; everything else becomes a ContentFreeError naming the kind, fields and SQLSTATE."""
    try:
        yield
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or '(root)'}: {err['type']}" for err in exc.errors()[:5]
        )
        raise ContentFreeError(f"internal validation error in {exc.title} ({where})") from None
    except StatementError as exc:
        if _transient(exc):
            exc.hide_parameters = True
            raise
        sqlstate = getattr(exc.orig, "sqlstate", None)
        raise ContentFreeError(f"database error {type(exc).__name__} (SQLSTATE {sqlstate})") from None


@app.task(name="ai.generate_knowledge_document", base=JobTask, bind=True, queue=Queue.AI, max_retries=AI_MAX_RETRIES)
def generate_knowledge_document(self: JobTask, args: GenerateKnowledgeDocumentArgs) -> dict[str, Any]:
    with content_free_errors():
        return knowledge.generate_knowledge_document(
            self.session,
            workspace_id=args.workspace_id,
            doc_type=args.doc_type,
            source=args.source,
            transcript=args.transcript,
            transcript_id=args.transcript_id,
        )


@app.task(name="ai.extract_voice_actions", base=JobTask, bind=True, queue=Queue.AI, max_retries=AI_MAX_RETRIES)
def extract_voice_actions(self: JobTask, args: ExtractVoiceActionsArgs) -> dict[str, Any]:
    with content_free_errors():
        return voice.extract_voice_actions(
            self.session,
            workspace_id=args.workspace_id,
            call_started_at=args.call_started_at,
            participants=args.participants,
            transcript=args.transcript,
            audio=args.audio,
        )


@app.task(name="ai.scan_content", base=JobTask, bind=True, queue=Queue.AI, max_retries=AI_MAX_RETRIES)
def scan_content(self: JobTask, args: ScanContentArgs) -> dict[str, Any]:
    with content_free_errors():
        return console.scan_content(
            self.session,
            workspace_id=args.workspace_id,
            scan_id=self.job_id,
            content=args.content,
            channel=args.channel,
            context=args.context,
        )


@app.task(name="ai.safety_stats", base=JobTask, bind=True, queue=Queue.AI, max_retries=AI_MAX_RETRIES)
def safety_stats(self: JobTask, args: SafetyStatsArgs) -> dict[str, Any]:
    with content_free_errors():
        return console.safety_stats(self.session, workspace_id=args.workspace_id, days=args.days)
