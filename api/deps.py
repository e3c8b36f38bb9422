"""Request dependencies: the database session and the caller's workspace (from its API key, rate-limited)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.keys import secret_matches, split_key
from api.ratelimit import TokenBucket, plan_limits
from models.core import ApiKey
from workers.db import get_engine, new_session
from workers.metrics import RATE_LIMITED
from workers.settings import get_settings

# A verified key is trusted for this long without a database round trip; revocation takes effect within it.
KEY_CACHE_SECONDS = 10.0

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Caller:
    workspace_id: int
    key_prefix: str


class _KeyCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, str, Caller]] = {}

    def get(self, prefix: str, secret: str) -> Caller | None:
        with self._lock:
            entry = self._entries.get(prefix)
        if entry is None or entry[0] < time.monotonic() or not secret_matches(secret, entry[1]):
            return None
        return entry[2]

    def put(self, prefix: str, secret_hash: str, caller: Caller) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[prefix] = (time.monotonic() + KEY_CACHE_SECONDS, secret_hash, caller)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


key_cache = _KeyCache()


def db_session() -> Iterator[Session]:
    session = new_session()
    try:
        yield session
    finally:
        session.close()


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _load_key(prefix: str) -> tuple[int, str] | None:
    with get_engine().connect() as conn:
        row = conn.execute(
            select(ApiKey.workspace_id, ApiKey.secret_hash).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
        ).one_or_none()
    return None if row is None else (row.workspace_id, row.secret_hash)


async def authenticate(presented: str) -> Caller:
    """The caller behind a presented key; a cache hit costs no database round trip and no thread hop."""
    parsed = split_key(presented)
    if parsed is None:
        raise _unauthorized("malformed API key")
    prefix, secret = parsed
    cached = key_cache.get(prefix, secret)
    if cached is not None:
        return cached
    row = await run_in_threadpool(_load_key, prefix)
    if row is None or not secret_matches(secret, row[1]):
        raise _unauthorized("invalid or revoked API key")
    caller = Caller(workspace_id=row[0], key_prefix=prefix)
    key_cache.put(prefix, row[1], caller)
    return caller


async def current_caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer API key")
    caller = await authenticate(credentials.credentials)
    request.state.caller = caller
    return caller


_bucket: TokenBucket | None = None


def token_bucket() -> TokenBucket:
    global _bucket
    if _bucket is None:
        _bucket = TokenBucket(get_settings().redis_url)
    return _bucket


async def enforce_rate_limit(workspace_id: int, response: Response) -> None:
    """Take one token from the workspace's bucket; 429 with Retry-After when it is empty."""
    limit = plan_limits.cached(workspace_id) or await run_in_threadpool(plan_limits.load, get_engine(), workspace_id)
    decision = await token_bucket().take(workspace_id, limit)
    headers = {"X-RateLimit-Limit": str(limit.burst), "X-RateLimit-Remaining": str(decision.remaining)}
    if not decision.allowed:
        RATE_LIMITED.labels(plan=limit.plan.value).inc()
        raise HTTPException(
            status_code=429,
            detail=f"rate limit of the {limit.plan.value} plan exceeded "
            f"({limit.rate_per_second}/s, burst {limit.burst}); retry in {decision.retry_after_seconds} s",
            headers={**headers, "Retry-After": str(decision.retry_after_seconds)},
        )
    response.headers.update(headers)


async def current_workspace(response: Response, caller: Caller = Depends(current_caller)) -> int:
    """The caller's workspace id, after its plan's rate limit: every route that touches tenant data uses this."""
    await enforce_rate_limit(caller.workspace_id, response)
    return caller.workspace_id
