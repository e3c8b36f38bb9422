"""Choosing and running an engine: the model (chunked, cached, measured) or the offline rules, and the report of
what ran that every AI job puts on its ledger result."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.ai import AIEngine, LLMCacheEntry
from tasks.ai.llm import (
    Completion,
    LLMRejected,
    LLMSettings,
    LLMUnavailable,
    LLMUnusable,
    Usage,
    complete_structured,
)
from tasks.ai.prompts import PromptTemplate
from tasks.ai.transcript import Turn, chunk_turns, render_turn
from workers.db import session_scope
from workers.errors import Transient
from workers.settings import get_settings

SchemaT = TypeVar("SchemaT", bound=BaseModel)

# Statuses that mean "this request's content was refused" (too long, unprocessable), so the rules can answer
# instead; 401/403/404 are configuration faults and fail the job loudly.
CONTENT_REJECTION_STATUSES = frozenset({400, 413, 422})
_CACHE_LOCK_CLASS = "artisan.llm_cache"


@dataclass
class EngineReport:
    """What produced a result and what it cost; stored under `llm` on the job's result."""

    engine: str
    model: str | None = None
    prompt_version: str | None = None
    mode: str | None = None
    chunks: int = 0
    calls: int = 0
    cached_calls: int = 0
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    fallback_reason: str | None = None
    dropped_items: int = 0
    # Audio only: "called" when the transcription endpoint was paid for in this run, "cached" when it was not.
    transcription: str | None = None
    # What the transcript did not back up in the answer (tasks/ai/knowledge.py: ground_document).
    warnings: list[str] = field(default_factory=list)

    def record(self, completion: Completion[Any]) -> None:
        self.calls += 1
        self.attempts += completion.attempts
        self.prompt_tokens += completion.usage.prompt_tokens
        self.completion_tokens += completion.usage.completion_tokens
        self.latency_ms += completion.latency_ms
        self.mode = completion.mode
        if completion.model:
            self.model = completion.model

    def record_failure(self, attempts: int, prompt_tokens: int, completion_tokens: int, latency_ms: float) -> None:
        # Tokens of an unusable answer were still paid for: they stay on the bill.
        self.attempts += attempts
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.latency_ms += latency_ms

    def fall_back(self, reason: str) -> None:
        self.engine = AIEngine.OFFLINE.value
        self.fallback_reason = reason

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency_ms"] = round(self.latency_ms, 1)
        data["total_tokens"] = self.prompt_tokens + self.completion_tokens
        return data


def llm_settings() -> LLMSettings | None:
    """The model's settings, or None when the offline engine is configured."""
    settings = get_settings()
    if settings.llm_provider != "openai":
        return None
    return LLMSettings(
        model=settings.openai_model,
        # A local OpenAI-compatible server needs no key, but the SDK insists on a non-empty one.
        api_key=settings.openai_api_key or "no-key",
        base_url=settings.openai_base_url,
        timeout_seconds=settings.llm_timeout_seconds,
        max_attempts=settings.llm_max_attempts,
    )


def input_hash(values: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def lock_cache_key(session: Session, workspace_id: int, task: str, model: str, version: str, key: str) -> None:
    """Serialise identical calls across workers and threads until this job's transaction ends.

    Two jobs with the same input (a duplicate enqueue, not a redelivery: those share a job id and its lock) would
    otherwise both miss the cache and both pay; with the lock the second waits, then reads the first's answer.
    The two-key form keeps these locks apart from the job base's one-key job locks."""
    identity = f"{workspace_id}|{task}|{model}|{version}|{key}"
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext(_CACHE_LOCK_CLASS), func.hashtext(identity))))


def cached_json(
    session: Session, workspace_id: int, task: str, model: str, version: str, key: str
) -> dict[str, Any] | None:
    return session.execute(
        select(LLMCacheEntry.output).where(
            LLMCacheEntry.workspace_id == workspace_id,
            LLMCacheEntry.task == task,
            LLMCacheEntry.model == model,
            LLMCacheEntry.prompt_version == version,
            LLMCacheEntry.input_hash == key,
        )
    ).scalar_one_or_none()


def cached_output(
    session: Session, workspace_id: int, prompt: PromptTemplate, model: str, key: str, schema: type[SchemaT]
) -> SchemaT | None:
    output = cached_json(session, workspace_id, prompt.task, model, prompt.version, key)
    if output is None:
        return None
    try:
        return schema.model_validate(output)
    except ValidationError:
        # The schema changed under the same prompt version: a miss, and the new answer replaces it.
        return None


def store_json(
    workspace_id: int,
    task: str,
    model: str,
    version: str,
    key: str,
    output: dict[str, Any],
    *,
    response_model: str | None = None,
    usage: Usage | None = None,
) -> None:
    """In its own transaction: the answer is paid for even if the job fails later, so a retry must find it."""
    usage = usage or Usage()
    values = {
        "workspace_id": workspace_id,
        "task": task,
        "model": model,
        "prompt_version": version,
        "input_hash": key,
        "output": output,
        "response_model": response_model,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
    }
    statement = insert(LLMCacheEntry).values(**values)
    statement = statement.on_conflict_do_update(
        constraint="uq_llm_cache_entries_key",
        set_={"output": statement.excluded.output, "response_model": statement.excluded.response_model},
    )
    with session_scope() as own:
        own.execute(statement)


def store_output(workspace_id: int, prompt: PromptTemplate, model: str, key: str, completion: Completion[Any]) -> None:
    store_json(
        workspace_id,
        prompt.task,
        model,
        prompt.version,
        key,
        completion.output.model_dump(mode="json"),
        response_model=completion.model or None,
        usage=completion.usage,
    )


def run_model(
    session: Session,
    settings: LLMSettings,
    report: EngineReport,
    *,
    workspace_id: int,
    prompt: PromptTemplate,
    schema: type[SchemaT],
    turns: Sequence[Turn],
    values: Callable[[str], dict[str, str]],
    chunk_tokens: int | None = None,
) -> list[SchemaT]:
    """The model's answer for each part of the transcript (cache first); raises the LLM layer's errors."""
    report.engine = AIEngine.OPENAI.value
    report.model = settings.model
    report.prompt_version = prompt.key
    chunks = chunk_turns(turns, chunk_tokens or get_settings().llm_chunk_tokens)
    report.chunks = len(chunks)
    outputs: list[SchemaT] = []
    for chunk in chunks:
        chunk_values = values("\n".join(render_turn(turn) for turn in chunk))
        key = input_hash(chunk_values)
        lock_cache_key(session, workspace_id, prompt.task, settings.model, prompt.version, key)
        hit = cached_output(session, workspace_id, prompt, settings.model, key, schema)
        if hit is not None:
            report.cached_calls += 1
            outputs.append(hit)
            continue
        completion = complete_structured(settings, prompt, schema, chunk_values)
        report.record(completion)
        store_output(workspace_id, prompt, settings.model, key, completion)
        outputs.append(completion.output)
    # The cache key is the configured model; the answer's own model name (a dated snapshot) is what we report.
    return outputs


ResultT = TypeVar("ResultT")


def with_fallback(
    report: EngineReport,
    by_model: Callable[[LLMSettings], ResultT],
    by_rules: Callable[[], ResultT],
) -> ResultT:
    """Run the configured engine; an unusable answer falls back to the rules, an outage is retried later."""
    settings = llm_settings()
    if settings is None:
        report.engine = AIEngine.OFFLINE.value
        return by_rules()
    try:
        return by_model(settings)
    except LLMUnusable as exc:
        report.record_failure(exc.attempts, exc.usage.prompt_tokens, exc.usage.completion_tokens, exc.latency_ms)
        report.fall_back(exc.reason)
    except LLMRejected as exc:
        if exc.status not in CONTENT_REJECTION_STATUSES:
            raise
        report.record_failure(exc.attempts, exc.usage.prompt_tokens, exc.usage.completion_tokens, exc.latency_ms)
        report.fall_back(f"rejected_http_{exc.status}")
    except LLMUnavailable as exc:
        # The job's bounded retries (JobTask) take over; answers already cached are not paid for again.
        raise Transient(str(exc), retry_after=exc.retry_after) from exc
    return by_rules()
