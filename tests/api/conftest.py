"""Fixtures of the enqueue API tests: API keys, an ASGI client with the app's lifespan, a JobsClient over it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import insert

from models.core import ApiKey


@pytest.fixture
def make_key(db_url: str) -> Callable[[int], str]:
    """A fresh API key of the given workspace; returns the plaintext."""
    from api.keys import generate_key
    from workers.db import session_scope

    def create(workspace_id: int) -> str:
        key = generate_key()
        with session_scope() as s:
            s.execute(insert(ApiKey).values(workspace_id=workspace_id, prefix=key.prefix, secret_hash=key.secret_hash))
        return key.plaintext

    return create


@pytest.fixture(scope="module")
def asgi(db_url: str) -> Iterator[Any]:
    """The real app through ASGI, its lifespan running (one event loop, pooled connections) for the module."""
    from fastapi.testclient import TestClient

    from api.main import app

    with TestClient(app) as client:
        yield client


@pytest.fixture
def auth() -> Callable[[str], dict[str, str]]:
    return lambda key: {"Authorization": f"Bearer {key}"}


@pytest.fixture
def jobs_client(asgi: Any, make_key: Callable[[int], str]) -> Callable[[int], Any]:
    """api.client.JobsClient over the ASGI client, for a workspace."""
    from api.client import JobsClient

    def make(workspace_id: int, **kwargs: Any) -> JobsClient:
        return JobsClient(api_key=make_key(workspace_id), http=asgi, **kwargs)

    return make
