"""Fixtures of the AI tests: the scripted OpenAI-compatible server and settings that point the worker at it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from models.core import Job
from tests.support.jobs import enqueue, wait_for_job
from tests.support.openai_server import OpenAIServer

MODEL = "gpt-test"


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


@pytest.fixture
def use_openai(openai_server: OpenAIServer) -> Iterator[OpenAIServer]:
    """Switch this process (and the in-process worker) to the OpenAI engine on the test server; restore after."""
    from tasks.ai.llm import forget_server_modes
    from workers.settings import get_settings

    overrides = {
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": openai_server.base_url,
        "OPENAI_MODEL": MODEL,
        # Short enough that the slow-answer test is quick, long enough for a loaded CI machine's valid answers.
        "LLM_TIMEOUT_SECONDS": "3",
        "LLM_MAX_ATTEMPTS": "2",
    }
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    get_settings.cache_clear()
    forget_server_modes()
    try:
        yield openai_server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
        forget_server_modes()


def run_ai(task: str, timeout: float = 90.0, **args: object) -> Job:
    """Enqueue an AI job through the ledger (workspace_id is an argument of every AI task) and wait for its row."""
    workspace_id = args.get("workspace_id")
    owner = workspace_id if isinstance(workspace_id, int) else None
    return wait_for_job(enqueue(task, dict(args), workspace_id=owner), timeout)
