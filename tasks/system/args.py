"""Argument models of the system tasks."""

from __future__ import annotations

from pydantic import Field

from workers.contracts import TaskArgs, task_args


@task_args("system.ping")
class PingArgs(TaskArgs):
    """Proves the path end to end; `sleep_seconds` makes it a slow job for fault drills."""

    message: str = Field(default="pong", max_length=200)
    sleep_seconds: float = Field(default=0.0, ge=0.0, le=60.0)


@task_args("system.redeliver_stale")
class RedeliverStaleArgs(TaskArgs):
    api_visible = False

    limit: int = Field(default=1000, ge=1, le=10000)


@task_args("system.prune_ledger")
class PruneLedgerArgs(TaskArgs):
    """Delete finished ledger rows older than the retention (LEDGER_RETENTION_DAYS), in bounded batches."""

    api_visible = False
    batch_size: int = Field(default=5000, ge=1, le=50000)
    max_batches: int = Field(default=200, ge=1, le=10000)
