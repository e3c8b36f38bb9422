"""Argument models for every task: the API validates POST /v1/jobs with them, the worker validates again."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, model_validator

import tasks


class TaskArgs(BaseModel):
    """Base of every task's arguments: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)
    # Internal tasks (sweepers, test probes) are not offered through POST /v1/jobs.
    api_visible: ClassVar[bool] = True

    @model_validator(mode="before")
    @classmethod
    def _refuse_nul_characters(cls, data: Any) -> Any:
        # PostgreSQL cannot store U+0000 in text or jsonb: refuse it here, naming the field, instead of failing
        # later in the ledger insert with an error that would quote the arguments.
        path = _nul_path(data, ())
        if path is not None:
            raise ValueError(f"{'.'.join(map(str, path)) or 'value'}: NUL characters (U+0000) are not allowed")
        return data


def _nul_path(value: Any, path: tuple[Any, ...]) -> tuple[Any, ...] | None:
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                return (*path, key)
            found = _nul_path(item, (*path, key))
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _nul_path(item, (*path, index))
            if found is not None:
                return found
    return None


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
