"""The one LLM layer every AI job uses: the official `openai` SDK, structured output, and our own retry policy.

- The SDK's own retries are set to 0 (default here) or 1 and its timeout to ours (30 s, not its 10 minutes), so this
  module owns the policy: 429 (honouring `Retry-After`), 408/409, 5xx, timeouts and connection errors are retried
  with exponential backoff and full jitter, bounded by `max_attempts`; a wait longer than `max_inline_wait_seconds`
  is handed back to the job (`LLMUnavailable.retry_after`) instead of holding a worker thread.
- Other 4xx, a truncated answer (`finish_reason=length`), a refusal and output that fails validation are not retried
  blindly: they raise `LLMRejected` / `LLMUnusable` and the caller decides (the AI jobs fall back to the offline
  engine on unusable output).
- Output is requested as a JSON schema from the pydantic model (`chat.completions.parse`) and validated again here;
  an OpenAI-compatible server that rejects schemas (HTTP 400 naming the response format) is asked again in plain
  JSON mode with the schema spelled out in the prompt, and remembered for the life of the process.
- Nothing here logs prompt or answer text: transcripts and messages are customer data.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

import openai
from pydantic import BaseModel, ValidationError

from tasks.ai.prompts import PromptTemplate

log = logging.getLogger(__name__)

SchemaT = TypeVar("SchemaT", bound=BaseModel)

_RETRYABLE_STATUS = frozenset({408, 409, 429})


@dataclass(frozen=True)
class LLMSettings:
    model: str
    api_key: str
    base_url: str | None = None
    timeout_seconds: float = 30.0
    max_attempts: int = 4
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 20.0
    # A Retry-After or backoff longer than this is not slept in a worker thread: the job is retried later instead.
    max_inline_wait_seconds: float = 30.0
    sdk_max_retries: int = 0
    temperature: float = 0.0
    max_completion_tokens: int = 4096

    def __post_init__(self) -> None:
        if not 0 <= self.sdk_max_retries <= 1:
            raise ValueError("the task owns retries: the SDK may retry at most once")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens

    @classmethod
    def from_body(cls, body: Any) -> Usage:
        usage = body.get("usage") if isinstance(body, dict) else None
        if not isinstance(usage, dict):
            return cls()
        return cls(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


@dataclass
class Completion(Generic[SchemaT]):
    output: SchemaT
    model: str
    mode: str
    attempts: int
    latency_ms: float
    usage: Usage = field(default_factory=Usage)


class LLMError(Exception):
    """Base of the LLM layer's failures. Messages name the condition, never the prompt or the answer."""

    def __init__(self, message: str, *, attempts: int, usage: Usage | None = None, latency_ms: float = 0.0) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.usage = usage or Usage()
        self.latency_ms = latency_ms


class LLMUnavailable(LLMError):
    """Retryable trouble (429, 5xx, timeout, connection) that outlasted the bounded retries, or a long Retry-After."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class LLMRejected(LLMError):
    """The server refused the request (4xx other than rate limits): retrying the same request cannot help."""

    def __init__(self, message: str, *, status: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status = status


class LLMUnusable(LLMError):
    """An answer arrived but cannot be used: invalid_json, schema_mismatch, truncated, refused, content_filter."""

    def __init__(self, reason: str, **kwargs: Any) -> None:
        super().__init__(f"model output unusable: {reason}", **kwargs)
        self.reason = reason


_clients: dict[tuple[str | None, str, float, int], openai.OpenAI] = {}
_clients_lock = threading.Lock()
# (base_url, model) pairs whose server rejected JSON-schema output: ask them in plain JSON mode from the start.
_json_object_only: set[tuple[str | None, str]] = set()
_json_object_lock = threading.Lock()


def client_for(settings: LLMSettings) -> openai.OpenAI:
    """One SDK client per configuration per process: it holds a connection pool and is safe to share across threads."""
    key = (settings.base_url, settings.api_key, settings.timeout_seconds, settings.sdk_max_retries)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = openai.OpenAI(
                    api_key=settings.api_key,
                    base_url=settings.base_url,
                    timeout=settings.timeout_seconds,
                    max_retries=settings.sdk_max_retries,
                )
                _clients[key] = client
    return client


def _uses_json_object(settings: LLMSettings) -> bool:
    with _json_object_lock:
        return (settings.base_url, settings.model) in _json_object_only


def _remember_json_object(settings: LLMSettings) -> None:
    with _json_object_lock:
        _json_object_only.add((settings.base_url, settings.model))


def forget_server_modes() -> None:
    """Forget which servers rejected schemas (a server may be upgraded; tests start fresh servers)."""
    with _json_object_lock:
        _json_object_only.clear()


def retry_after_seconds(headers: Any, now: datetime | None = None) -> float | None:
    """Seconds a server asked us to wait: `retry-after-ms`, `Retry-After` in seconds or as an HTTP date."""
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(attempt: int, settings: LLMSettings, rng: random.Random, retry_after: float | None) -> float:
    """Full-jitter exponential backoff; never shorter than the server's Retry-After (plus a little jitter, so
    threads released by the same 429 do not return in lockstep)."""
    ceiling = min(settings.backoff_max_seconds, settings.backoff_base_seconds * 2 ** (attempt - 1))
    delay = rng.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after + rng.uniform(0, min(1.0, 0.1 * retry_after + 0.05)))
    return delay


def _schema_rejected(exc: openai.BadRequestError) -> bool:
    text = f"{exc.message} {exc.body!r}".lower()
    return any(word in text for word in ("response_format", "json_schema", "schema"))


def _content_error_reason(exc: ValidationError) -> str:
    return "invalid_json" if any(err["type"] == "json_invalid" for err in exc.errors()) else "schema_mismatch"


def complete_structured(
    settings: LLMSettings,
    prompt: PromptTemplate,
    schema: type[SchemaT],
    values: dict[str, str],
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> Completion[SchemaT]:
    """One structured completion with the retry policy above; raises an `LLMError` subclass when it cannot."""
    client = client_for(settings)
    rng = rng or random.Random()
    usage = Usage()
    latency_ms = 0.0
    mode = "json_object" if _uses_json_object(settings) else "json_schema"
    attempt = 0
    while True:
        attempt += 1
        started = time.monotonic()
        retry_after: float | None = None
        failure: str
        try:
            if mode == "json_schema":
                raw = client.chat.completions.with_raw_response.parse(
                    model=settings.model,
                    messages=prompt.messages(**values),  # type: ignore[arg-type]
                    response_format=schema,
                    temperature=settings.temperature,
                    max_completion_tokens=settings.max_completion_tokens,
                )
            else:
                raw = client.chat.completions.with_raw_response.parse(
                    model=settings.model,
                    messages=prompt.messages(schema, **values),  # type: ignore[arg-type]
                    response_format={"type": "json_object"},
                    temperature=settings.temperature,
                    max_completion_tokens=settings.max_completion_tokens,
                )
            latency_ms += (time.monotonic() - started) * 1000
            return _read_answer(raw, schema, mode=mode, attempts=attempt, usage=usage, latency_ms=latency_ms)
        except openai.APITimeoutError:
            # Subclass of APIConnectionError: caught first so the ledger can tell them apart.
            failure = "timeout"
        except openai.APIConnectionError:
            failure = "connection error"
        except openai.BadRequestError as exc:
            latency_ms += (time.monotonic() - started) * 1000
            if mode == "json_schema" and _schema_rejected(exc):
                log.info("llm server rejected json_schema output, using json_object", extra={"model": settings.model})
                _remember_json_object(settings)
                mode = "json_object"
                if attempt < settings.max_attempts:
                    continue
            raise LLMRejected(
                f"llm request rejected: HTTP {exc.status_code}",
                status=exc.status_code,
                attempts=attempt,
                usage=usage,
                latency_ms=latency_ms,
            ) from None
        except openai.APIStatusError as exc:
            if exc.status_code not in _RETRYABLE_STATUS and exc.status_code < 500:
                latency_ms += (time.monotonic() - started) * 1000
                raise LLMRejected(
                    f"llm request rejected: HTTP {exc.status_code}",
                    status=exc.status_code,
                    attempts=attempt,
                    usage=usage,
                    latency_ms=latency_ms,
                ) from None
            failure = f"HTTP {exc.status_code}"
            retry_after = retry_after_seconds(exc.response.headers)
        latency_ms += (time.monotonic() - started) * 1000
        if attempt >= settings.max_attempts:
            raise LLMUnavailable(
                f"llm unavailable after {attempt} attempts: {failure}",
                retry_after=retry_after,
                attempts=attempt,
                usage=usage,
                latency_ms=latency_ms,
            )
        delay = backoff_delay(attempt, settings, rng, retry_after)
        if delay > settings.max_inline_wait_seconds:
            raise LLMUnavailable(
                f"llm asked to wait {delay:.0f}s: {failure}",
                retry_after=delay,
                attempts=attempt,
                usage=usage,
                latency_ms=latency_ms,
            )
        log.warning("llm call failed, retrying", extra={"failure": failure, "attempt": attempt, "delay_s": delay})
        sleep(delay)


def _read_answer(
    raw: Any, schema: type[SchemaT], *, mode: str, attempts: int, usage: Usage, latency_ms: float
) -> Completion[SchemaT]:
    try:
        body = raw.http_response.json()
    except (json.JSONDecodeError, ValueError):
        raise LLMUnusable("invalid_json", attempts=attempts, usage=usage, latency_ms=latency_ms) from None
    usage.add(Usage.from_body(body))
    try:
        completion = raw.parse()
    except openai.LengthFinishReasonError:
        raise LLMUnusable("truncated", attempts=attempts, usage=usage, latency_ms=latency_ms) from None
    except openai.ContentFilterFinishReasonError:
        raise LLMUnusable("content_filter", attempts=attempts, usage=usage, latency_ms=latency_ms) from None
    except ValidationError as exc:
        raise LLMUnusable(_content_error_reason(exc), attempts=attempts, usage=usage, latency_ms=latency_ms) from None
    if not completion.choices:
        raise LLMUnusable("empty", attempts=attempts, usage=usage, latency_ms=latency_ms)
    choice = completion.choices[0]
    if choice.finish_reason == "length":
        raise LLMUnusable("truncated", attempts=attempts, usage=usage, latency_ms=latency_ms)
    if getattr(choice.message, "refusal", None):
        raise LLMUnusable("refused", attempts=attempts, usage=usage, latency_ms=latency_ms)
    content = choice.message.content
    if not content:
        raise LLMUnusable("empty", attempts=attempts, usage=usage, latency_ms=latency_ms)
    try:
        # Our own validation is the authority in both modes (the SDK's parse is skipped in json_object mode).
        output = schema.model_validate_json(content)
    except ValidationError as exc:
        raise LLMUnusable(_content_error_reason(exc), attempts=attempts, usage=usage, latency_ms=latency_ms) from None
    return Completion(
        output=output, model=completion.model or "", mode=mode, attempts=attempts, latency_ms=latency_ms, usage=usage
    )


def transcribe(
    settings: LLMSettings,
    model: str,
    filename: str,
    audio: bytes,
    content_type: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Speech to text through the OpenAI-compatible `/audio/transcriptions` endpoint, with the same retry bounds."""
    client = client_for(settings)
    rng = random.Random()
    attempt = 0
    while True:
        attempt += 1
        retry_after: float | None = None
        try:
            result = client.audio.transcriptions.create(
                model=model, file=(filename, audio, content_type), response_format="json"
            )
            return str(result.text)
        except openai.APITimeoutError:
            failure = "timeout"
        except openai.APIConnectionError:
            failure = "connection error"
        except openai.APIStatusError as exc:
            if exc.status_code not in _RETRYABLE_STATUS and exc.status_code < 500:
                raise LLMRejected(
                    f"transcription rejected: HTTP {exc.status_code}", status=exc.status_code, attempts=attempt
                ) from None
            failure = f"HTTP {exc.status_code}"
            retry_after = retry_after_seconds(exc.response.headers)
        if attempt >= settings.max_attempts:
            raise LLMUnavailable(f"transcription unavailable: {failure}", retry_after=retry_after, attempts=attempt)
        delay = backoff_delay(attempt, settings, rng, retry_after)
        if delay > settings.max_inline_wait_seconds:
            raise LLMUnavailable(f"transcription asked to wait {delay:.0f}s", retry_after=delay, attempts=attempt)
        sleep(delay)
