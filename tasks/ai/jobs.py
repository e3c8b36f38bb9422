"""Celery faces of the AI jobs (the `ai` queue, served by a thread-pool worker: LLM calls wait on the network)."""

from __future__ import annotations

from typing import Any

from tasks.ai import console, knowledge, voice
from tasks.ai.args import (
    ExtractVoiceActionsArgs,
    GenerateKnowledgeDocumentArgs,
    SafetyStatsArgs,
    ScanContentArgs,
)
from workers.app import app
from workers.jobtask import JobTask
from workers.queues import Queue

# Each retry may make up to LLM_MAX_ATTEMPTS calls of its own, so the ledger-level bound stays small.
AI_MAX_RETRIES = 3


@app.task(name="ai.generate_knowledge_document", base=JobTask, bind=True, queue=Queue.AI, max_retries=AI_MAX_RETRIES)
def generate_knowledge_document(self: JobTask, args: GenerateKnowledgeDocumentArgs) -> dict[str, Any]:
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
    return console.safety_stats(self.session, workspace_id=args.workspace_id, days=args.days)
