"""Argument models of the operations tasks."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from workers.contracts import TaskArgs, task_args


@task_args("operations.recover_orphans")
class RecoverOrphansArgs(TaskArgs):
    """Beat's recovery sweep over every workspace's runs: not for API callers."""

    api_visible: ClassVar[bool] = False

    # A claim younger than this is left alone (its first statements may still be in flight).
    min_age_seconds: float = Field(default=10.0, ge=0.0, le=3600.0)
    limit: int = Field(default=500, ge=1, le=10_000)
