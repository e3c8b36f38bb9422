"""Request dependencies: the database session and the caller's workspace (from its API key)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.keys import secret_matches, split_key
from models.core import ApiKey
from workers.db import new_session

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


def authenticate(presented: str, session: Session) -> Caller:
    parsed = split_key(presented)
    if parsed is None:
        raise _unauthorized("malformed API key")
    prefix, secret = parsed
    cached = key_cache.get(prefix, secret)
    if cached is not None:
        return cached
    row = session.execute(
        select(ApiKey.workspace_id, ApiKey.secret_hash).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    ).one_or_none()
    session.rollback()
    if row is None or not secret_matches(secret, row.secret_hash):
        raise _unauthorized("invalid or revoked API key")
    caller = Caller(workspace_id=row.workspace_id, key_prefix=prefix)
    key_cache.put(prefix, row.secret_hash, caller)
    return caller


def current_caller(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    session: Session = Depends(db_session),
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer API key")
    caller = authenticate(credentials.credentials, session)
    request.state.caller = caller
    return caller


def current_workspace(caller: Caller = Depends(current_caller)) -> int:
    """The caller's workspace id: every route that touches tenant data depends on this."""
    return caller.workspace_id
