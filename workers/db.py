"""One SQLAlchemy engine per process, created lazily after fork, and sessions scoped to a unit of work."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from workers.settings import get_settings

_lock = threading.Lock()
_engine: Engine | None = None
_engine_pid: int | None = None
_sessionmaker: sessionmaker[Session] | None = None
# Pre-ping costs a round trip per checkout (~2 ms a job). Workers turn it off: a stale connection raises
# OperationalError there, which the job base retries on a fresh one. The API keeps it, so a request never fails
# on a connection that went stale while idle.
pre_ping = True


def get_engine() -> Engine:
    """The process's engine; a forked child never reuses its parent's connections (SQLAlchemy pooling docs)."""
    global _engine, _engine_pid, _sessionmaker
    pid = os.getpid()
    if _engine is not None and _engine_pid == pid:
        return _engine
    with _lock:
        if _engine is None or _engine_pid != pid:
            if _engine is not None:
                # Inherited from the parent: drop the pool without closing the parent's sockets.
                _engine.dispose(close=False)
            _engine = create_engine(
                get_settings().database_url,
                pool_pre_ping=pre_ping,
                pool_size=10,
                max_overflow=20,
                pool_recycle=1800,
                # Errors and logs never carry bound parameters: they may hold personal data or message text.
                hide_parameters=True,
                connect_args={"connect_timeout": 5},
            )
            _engine_pid = pid
            _sessionmaker = sessionmaker(bind=_engine, expire_on_commit=False)
    return _engine


def new_session() -> Session:
    get_engine()
    assert _sessionmaker is not None
    return _sessionmaker()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session whose transaction commits when the block succeeds and rolls back when it raises."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def use_pre_ping(enabled: bool) -> None:
    global pre_ping
    pre_ping = enabled
    reset_engine()


def reset_engine() -> None:
    """Forget the engine (tests that change DATABASE_URL, and the worker after fork)."""
    global _engine, _engine_pid, _sessionmaker
    with _lock:
        if _engine is not None:
            _engine.dispose(close=_engine_pid == os.getpid())
        _engine = None
        _engine_pid = None
        _sessionmaker = None
