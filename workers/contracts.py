"""Argument models for every task: the API validates POST /v1/jobs with them, the worker validates again."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

import tasks


class TaskArgs(BaseModel):
    """Base of every task's arguments: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)
    # Internal tasks (sweepers, test probes) are not offered through POST /v1/jobs.
    api_visible: ClassVar[bool] = True


ArgsT = TypeVar("ArgsT", bound=type[TaskArgs])

TASK_ARGS: dict[str, type[TaskArgs]] = {}


def task_args(task_name: str) -> Callable[[ArgsT], ArgsT]:
    """Register the argument model of a task by its contract name."""

    def register(model: ArgsT) -> ArgsT:
        existing = TASK_ARGS.get(task_name)
        if existing is not None and existing is not model:
            raise RuntimeError(f"two argument models registered for {task_name}")
        TASK_ARGS[task_name] = model
        return model

    return register


def task_areas() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(tasks.__path__) if m.ispkg)


def import_area_modules(module: str) -> None:
    """Import `tasks.<area>.<module>` for every area that has one."""
    for area in task_areas():
        name = f"tasks.{area}.{module}"
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def load_task_args() -> dict[str, type[TaskArgs]]:
    import_area_modules("args")
    return TASK_ARGS
