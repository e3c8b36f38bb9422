"""Test harness: a fresh migrated PostgreSQL database and an own Redis db number per run, real workers.

The environment is set before anything imports the settings, so every process the tests start (worker
subprocesses, uvicorn) inherits the same isolated database and broker.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
os.environ.pop("OPENAI_API_KEY", None)
os.environ["LLM_PROVIDER"] = "offline"

import pytest

from tests.support.env import Isolated, isolate

_isolated: Isolated | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _isolated
    if getattr(config, "workerinput", None) is None and _isolated is None:
        _isolated = isolate()


def pytest_unconfigure(config: pytest.Config) -> None:
    global _isolated
    if _isolated is not None:
        from workers.db import reset_engine

        reset_engine()
        _isolated.release()
        _isolated = None


@pytest.fixture(scope="session")
def isolated() -> Isolated:
    assert _isolated is not None
    return _isolated


@pytest.fixture(scope="session")
def db_url(isolated: Isolated) -> str:
    return isolated.database_url


@pytest.fixture(scope="session")
def redis_url(isolated: Isolated) -> str:
    return isolated.redis_url


@pytest.fixture
def session(db_url: str) -> Iterator[Any]:
    from workers.db import new_session

    s = new_session()
    try:
        yield s
    finally:
        s.rollback()
        s.close()


@pytest.fixture
def make_workspace(db_url: str) -> Callable[..., int]:
    """Create a workspace (unique name) with an active subscription on `plan`; returns its id."""
    from sqlalchemy import insert

    from models.core import Subscription, SubscriptionStatus, Workspace
    from workers.db import session_scope

    def create(plan: str | None = "starter", timezone: str = "UTC", name: str | None = None) -> int:
        now = datetime.now(UTC)
        with session_scope() as s:
            workspace_id = s.execute(
                insert(Workspace)
                .values(name=name or f"ws-{uuid.uuid4().hex[:12]}", timezone=timezone)
                .returning(Workspace.id)
            ).scalar_one()
            if plan is not None:
                s.execute(
                    insert(Subscription).values(
                        workspace_id=workspace_id,
                        plan_code=plan,
                        status=SubscriptionStatus.ACTIVE,
                        started_at=now,
                        billing_anchor_day=now.day,
                        current_period_start=now,
                        current_period_end=now + timedelta(days=30),
                    )
                )
        return workspace_id

    return create


@pytest.fixture(scope="module")
def celery_worker(db_url: str) -> Iterator[Any]:
    """A real in-process worker (thread pool) on the real broker, consuming every queue; one per test module.

    It lives until the module ends: tests that start their own WorkerProcess (to kill it) must sit in a module
    that does not use this fixture, or this worker would take their messages.
    """
    from celery.contrib.testing.worker import start_worker

    from workers.app import app

    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        shutdown_timeout=30.0,
        loglevel="WARNING",
    ) as worker:
        yield worker


@pytest.fixture
def run_job(celery_worker: Any) -> Callable[..., Any]:
    from tests.support.jobs import run_job as _run_job

    return _run_job
