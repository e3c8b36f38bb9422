"""Billing fixtures: workspaces in a chosen zone, subscriptions made by the lifecycle code, an API client."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import insert, text


@pytest.fixture
def new_workspace(db_url: str) -> Callable[..., int]:
    from models.core import Workspace
    from workers.db import session_scope

    def create(timezone: str = "UTC") -> int:
        with session_scope() as s:
            return int(
                s.execute(
                    insert(Workspace)
                    .values(name=f"billing-{uuid.uuid4().hex[:12]}", timezone=timezone)
                    .returning(Workspace.id)
                ).scalar_one()
            )

    return create


@pytest.fixture
def new_subscription(db_url: str) -> Callable[..., int]:
    from tasks.billing.lifecycle import create_subscription
    from workers.db import session_scope

    def create(workspace_id: int, plan: str = "starter", *, now: datetime | None = None, **kwargs: Any) -> int:
        with session_scope() as s:
            return create_subscription(s, workspace_id, plan, now=now, **kwargs)

    return create


@pytest.fixture
def subscription_row(db_url: str) -> Callable[[int], Any]:
    from workers.db import session_scope

    def read(subscription_id: int) -> Any:
        with session_scope() as s:
            return s.execute(
                text("SELECT *, plan_code::text AS plan, status::text AS state FROM subscriptions WHERE id = :id"),
                {"id": subscription_id},
            ).one()

    return read


@pytest.fixture
def api_client(db_url: str) -> Iterator[Callable[[int], Any]]:
    """A TestClient for the real app, authenticated with a fresh API key of the given workspace."""
    from fastapi.testclient import TestClient

    from api.keys import generate_key
    from api.main import app
    from models.core import ApiKey
    from workers.db import session_scope

    clients: list[TestClient] = []

    def make(workspace_id: int) -> TestClient:
        key = generate_key()
        with session_scope() as s:
            s.execute(insert(ApiKey).values(workspace_id=workspace_id, prefix=key.prefix, secret_hash=key.secret_hash))
        client = TestClient(app, headers={"Authorization": f"Bearer {key.plaintext}"})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
