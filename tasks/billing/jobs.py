"""Celery faces of the billing jobs: parse arguments, call the plain logic, enqueue follow-ups as ledger children."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tasks.billing import aggregation, ingest, invoicing, lifecycle, quotas
from tasks.billing.args import (
    AggregateUsageArgs,
    CheckQuotasArgs,
    FinalizeInvoicesArgs,
    GenerateInvoiceArgs,
    GenerateInvoicesArgs,
    IngestUsageArgs,
    ProcessTrialsArgs,
)
from workers.app import app
from workers.jobtask import JobTask
from workers.ledger import IdempotencyConflict
from workers.queues import Queue


def _hour_bucket(at: datetime) -> str:
    # Runs of the same hour share idempotency keys (a second beat or a double enqueue adds nothing); the next
    # hour's run may enqueue again whatever is still due (a child that failed for good is retried hourly).
    return at.astimezone(UTC).strftime("%Y%m%dT%H")


@app.task(name="billing.ingest_usage", base=JobTask, bind=True, queue=Queue.BILLING, max_retries=5)
def ingest_usage(self: JobTask, args: IngestUsageArgs) -> dict[str, Any]:
    return ingest.ingest_events(self.session, args.workspace_id, args.events).as_dict()


@app.task(name="billing.aggregate_usage", base=JobTask, bind=True, queue=Queue.BILLING, max_retries=5)
def aggregate_usage(self: JobTask, args: AggregateUsageArgs) -> dict[str, Any]:
    result = aggregation.aggregate_usage(self.session, chunk_events=args.chunk_events, max_chunks=args.max_chunks)
    txid, event_id = result.watermark
    if result.events:
        # Quotas follow the aggregation they depend on, once per watermark position.
        self.enqueue_child("billing.check_quotas", {}, idempotency_key=f"billing.check_quotas:{txid}:{event_id}")
    if result.more:
        self.enqueue_child(
            "billing.aggregate_usage",
            args.model_dump(),
            idempotency_key=f"billing.aggregate_usage:{txid}:{event_id}",
        )
    return result.as_dict()


@app.task(name="billing.check_quotas", base=JobTask, bind=True, queue=Queue.BILLING, max_retries=5)
def check_quotas(self: JobTask, args: CheckQuotasArgs) -> dict[str, Any]:
    return quotas.check_quotas(self.session)


@app.task(name="billing.generate_invoices", base=JobTask, bind=True, queue=Queue.BILLING, max_retries=5)
def generate_invoices(self: JobTask, args: GenerateInvoicesArgs) -> dict[str, Any]:
    as_of = args.as_of or datetime.now(UTC)
    bucket = _hour_bucket(as_of)
    due = invoicing.due_subscriptions(
        self.session, now=as_of, after_id=args.after_subscription_id, limit=args.chunk_size
    )
    continued = False
    if len(due) == args.chunk_size:
        # The continuation is written (and so published) before this chunk's invoices: the next chunk is found
        # and fanned out while these are invoiced, instead of queueing behind them and leaving workers idle
        # while it runs.
        try:
            self.enqueue_child(
                "billing.generate_invoices",
                {"as_of": as_of.isoformat(), "after_subscription_id": due[-1][0], "chunk_size": args.chunk_size},
                idempotency_key=f"billing.generate_invoices:{bucket}:{due[-1][0]}",
            )
            continued = True
        except IdempotencyConflict:
            # A concurrent run of the same hour already continues after this cursor (with its own as_of).
            continued = False
    self.enqueue_children(
        "billing.generate_invoice",
        [
            (
                {"subscription_id": subscription_id, "period_start": period_start.isoformat()},
                f"billing.generate_invoice:{subscription_id}:{period_start.isoformat()}:{bucket}",
            )
            for subscription_id, period_start in due
        ],
    )
    return {"enqueued": len(due), "continued": continued, "as_of": as_of.isoformat()}


@app.task(name="billing.generate_invoice", base=JobTask, bind=True, queue=Queue.BILLING, max_retries=5)
def generate_invoice(self: JobTask, args: GenerateInvoiceArgs) -> dict[str, Any]:
    result = invoicing.generate_invoice(self.session, args.subscription_id, args.period_start)
    next_start = result.get("next_period_start")
    if result.get("next_period_due") and next_start:
        # Catching up a subscription more than one period behind: its next ended period, right away.
        self.enqueue_child(
            "billing.generate_invoice",
            {"subscription_id": args.subscription_id, "period_start": next_start},
            idempotency_key=(
                f"billing.generate_invoice:{args.subscription_id}:{next_start}:{_hour_bucket(datetime.now(UTC))}"
            ),
        )
    return result


@app.task(name="billing.finalize_invoices", base=JobTask, bind=True, queue=Queue.BILLING, max_retries=5)
def finalize_invoices(self: JobTask, args: FinalizeInvoicesArgs) -> dict[str, Any]:
    result = invoicing.finalize_invoices(self.session, limit=args.limit)
    if result["finalized"] == args.limit:
        # A full batch: more drafts may be waiting; a follow-up run takes the next batch (SKIP LOCKED).
        self.enqueue_child("billing.finalize_invoices", args.model_dump())
    return result


@app.task(name="billing.process_trials", base=JobTask, bind=True, queue=Queue.BILLING, max_retries=5)
def process_trials(self: JobTask, args: ProcessTrialsArgs) -> dict[str, Any]:
    result = lifecycle.process_trials(self.session, limit=args.limit)
    if result["processed"] == args.limit:
        self.enqueue_child("billing.process_trials", args.model_dump())
    return result
