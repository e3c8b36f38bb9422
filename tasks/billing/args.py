"""Argument models of the billing tasks (the API validates POST /v1/jobs with them; the worker again)."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, Field

from tasks.billing.ingest import MAX_BATCH_EVENTS
from workers.contracts import TaskArgs, task_args


@task_args("billing.ingest_usage")
class IngestUsageArgs(TaskArgs):
    """A batch from a `send_task` producer; each event is validated on its own (bad ones are reported by index)."""

    workspace_id: int = Field(gt=0)
    events: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


@task_args("billing.aggregate_usage")
class AggregateUsageArgs(TaskArgs):
    chunk_events: int = Field(default=5_000_000, ge=1_000, le=20_000_000)
    max_chunks: int = Field(default=40, ge=1, le=1_000)


@task_args("billing.check_quotas")
class CheckQuotasArgs(TaskArgs):
    pass


@task_args("billing.generate_invoices")
class GenerateInvoicesArgs(TaskArgs):
    """The fan-out: one bounded chunk of due subscriptions per run, continued by a child run after the cursor.

    `as_of` fixes "now" for the whole run (set by the first run), so every chunk sees the same due set and the
    children's idempotency keys repeat when the same run is enqueued twice.
    """

    as_of: AwareDatetime | None = None
    after_subscription_id: int = Field(default=0, ge=0)
    chunk_size: int = Field(default=500, ge=1, le=5_000)


@task_args("billing.generate_invoice")
class GenerateInvoiceArgs(TaskArgs):
    subscription_id: int = Field(gt=0)
    period_start: AwareDatetime


@task_args("billing.finalize_invoices")
class FinalizeInvoicesArgs(TaskArgs):
    limit: int = Field(default=500, ge=1, le=10_000)


@task_args("billing.process_trials")
class ProcessTrialsArgs(TaskArgs):
    limit: int = Field(default=1000, ge=1, le=10_000)
