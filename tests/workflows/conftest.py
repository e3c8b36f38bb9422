"""Fixtures of the workflow tests: a workspace and a helper storing maps in it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from models.workflows import WorkflowMap
from tasks.workflows import engine
from workers.db import session_scope


@pytest.fixture
def workspace_id(make_workspace: Callable[..., int]) -> int:
    return make_workspace(plan="professional")


@pytest.fixture
def save_map(workspace_id: int) -> Callable[..., int]:
    """Store a map in the test's workspace; ``validate=False`` stores it raw, as an old or hand-edited row."""

    def save(definition: dict[str, Any], *, validate: bool = True, enabled: bool = True, name: str = "") -> int:
        with session_scope() as session:
            if validate:
                workflow = engine.create_map(
                    session, workspace_id, name or f"map-{id(definition)}", definition, enabled=enabled
                )
            else:
                workflow = WorkflowMap(
                    workspace_id=workspace_id,
                    name=name or f"raw-{id(definition)}",
                    definition=definition,
                    enabled=enabled,
                )
                session.add(workflow)
                session.flush()
            return workflow.id

    return save
