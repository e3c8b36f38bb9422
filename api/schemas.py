"""Request and response models of the jobs routes; the enqueue body is a union discriminated by `task`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model

from models.core import JobStatus
from workers.contracts import TaskArgs, load_task_args


class JobLinks(BaseModel):
    self: str


class JobAccepted(BaseModel):
    id: uuid.UUID
    task: str
    status: JobStatus
    links: JobLinks


class JobOut(BaseModel):
    id: uuid.UUID
    task: str
    status: JobStatus
    attempts: int
    result: dict[str, Any] | None
    error: str | None
    enqueued_at: datetime
    run_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class ErrorOut(BaseModel):
    error: str
    task: str | None = None
    fields: list[dict[str, Any]] = Field(default_factory=list)


# Tasks without a `workspace_id` argument act on every tenant (sweeps, fan-outs) or on rows named by id; a tenant's
# key may not start those. These few touch no tenant data and stay open to every key.
TENANT_NEUTRAL_TASKS = frozenset({"system.ping"})


def api_tasks() -> dict[str, type[TaskArgs]]:
    """The tasks POST /v1/jobs accepts: implemented, API-visible, and scoped to the caller's workspace."""
    return {
        name: model
        for name, model in sorted(load_task_args().items())
        if getattr(model, "api_visible", True)
        and ("workspace_id" in model.model_fields or name in TENANT_NEUTRAL_TASKS)
    }


def _request_args_model(name: str, args_model: type[TaskArgs]) -> type[TaskArgs]:
    """The task's args as the API takes them: `workspace_id` may be left out and defaults to the key's own."""
    if "workspace_id" not in args_model.model_fields:
        return args_model
    return create_model(
        args_model.__name__ + "Request",
        __base__=args_model,
        workspace_id=(
            int | None,
            Field(default=None, description="Must be the API key's workspace; left out, it is filled in with it"),
        ),
    )


def _args_field(args_model: type[TaskArgs]) -> tuple[Any, Any]:
    if any(field.is_required() for field in args_model.model_fields.values()):
        return (args_model, ...)
    return (args_model, Field(default_factory=args_model))


def build_enqueue_model() -> Any:
    """One request model per task (`task` literal + its `args` model), joined in a discriminated union."""
    variants = []
    for name, args_model in api_tasks().items():
        variants.append(
            create_model(
                "Enqueue_" + name.replace(".", "_"),
                __config__=ConfigDict(extra="forbid"),
                task=(Literal[name], ...),  # type: ignore[valid-type]
                args=_args_field(_request_args_model(name, args_model)),
                idempotency_key=(str | None, Field(default=None, min_length=1, max_length=200)),
                run_at=(
                    AwareDatetime | None,
                    Field(default=None, description="Run no earlier than this (timezone offset required)"),
                ),
            )
        )
    if len(variants) == 1:
        return variants[0]
    return Annotated[Union[tuple(variants)], Field(discriminator="task")]  # noqa: UP007
