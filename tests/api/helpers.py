"""Helpers of the API tests: ledger counts, a private redis-server, a uvicorn process on a free port."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile

import httpx
import redis
from sqlalchemy import func, select

from models.core import Job
from tests.support.env import ROOT
from tests.support.services import free_port, wait_until
from workers.db import session_scope
from workers.queues import Queue


def ledger_count(workspace_id: int) -> int:
    with session_scope() as s:
        query = select(func.count()).select_from(Job).where(Job.workspace_id == workspace_id)
        return int(s.execute(query).scalar_one())


def queue_lengths(redis_url: str) -> dict[str, int]:
    client = redis.Redis.from_url(redis_url)
    return {q.value: int(client.llen(q.value)) for q in Queue}


class UvicornServer:
    """`uvicorn api.main:app` in its own process on a free port, with extra environment (e.g. REDIS_URL)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.env = {**os.environ, **(env or {})}
        self.log_path = os.path.join(tempfile.gettempdir(), f"artisan-uvicorn-{self.port}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> UvicornServer:
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child owns it for its lifetime
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            return False

        wait_until(up, 90, 0.2, f"uvicorn on port {self.port}")
        return self

    def log_tail(self) -> str:
        with open(self.log_path, errors="replace") as fh:
            return fh.read()[-4000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.proc = None


def create_workspace_with_key(plan: str = "enterprise") -> tuple[int, str]:
    """A new workspace with an active subscription on `plan` and an API key; returns (id, plaintext key)."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert

    from api.keys import generate_key
    from models.core import ApiKey, Subscription, SubscriptionStatus, Workspace

    now = datetime.now(UTC)
    key = generate_key()
    with session_scope() as s:
        workspace_id = s.execute(
            insert(Workspace).values(name=f"api-{key.prefix}").returning(Workspace.id)
        ).scalar_one()
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
        s.execute(insert(ApiKey).values(workspace_id=workspace_id, prefix=key.prefix, secret_hash=key.secret_hash))
    return workspace_id, key.plaintext
