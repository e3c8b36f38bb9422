"""POST /v1/usage/events (batch ingest, idempotent on event_id) and GET /v1/subscriptions/{id}/usage."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import current_workspace, db_session
from api.schemas import ErrorOut
from models.core import Metric, PlanTier, QuotaStatus
from tasks.billing.aggregation import period_usage
from tasks.billing.ingest import MAX_BATCH_EVENTS, BatchShapeError, UsageBatchIn, parse_batch_json, store_events
from tasks.billing.quotas import quota_status

router = APIRouter(tags=["usage"])


class RejectedEvent(BaseModel):
    index: int
    reason: str


class UsageIngestOut(BaseModel):
    accepted: int
    duplicates: int
    duplicate_indexes: list[int]
    rejected: list[RejectedEvent]


class MetricUsageOut(BaseModel):
    metric: Metric
    used: int
    limit: int | None
    remaining: int | None
    percent_used: float | None
    status: QuotaStatus


class SubscriptionUsageOut(BaseModel):
    subscription_id: int
    plan: PlanTier
    period_start: datetime
    period_end: datetime
    metrics: list[MetricUsageOut]


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    404: {"model": ErrorOut},
    413: {"model": ErrorOut},
    422: {"model": ErrorOut},
}


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its $defs inlined: the body is parsed by hand (per-event errors), so FastAPI
    does not register the model's components, and the OpenAPI document must still describe the body fully."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


def _ingest(session: Session, workspace_id: int, body: bytes) -> dict[str, Any]:
    events, reasons = parse_batch_json(body)
    try:
        result = store_events(session, workspace_id, events, reasons)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return result.as_dict()


@router.post(
    "/v1/usage/events",
    response_model=UsageIngestOut,
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline_schema(UsageBatchIn)}},
        }
    },
)
async def ingest_usage_events(
    request: Request,
    workspace_id: int = Depends(current_workspace),
    session: Session = Depends(db_session),
) -> Any:
    """Store a batch of up to 10,000 usage events `{event_id, subscription_id, metric, quantity, occurred_at}`.

    Each event is judged on its own: invalid ones (bad fields, another workspace's or an unknown subscription,
    more than 5 minutes in the future) are listed under `rejected` by index with the reason, and the valid ones
    are stored. An `event_id` seen before (in this batch or earlier) counts once and is listed as a duplicate.
    A malformed body (not JSON, no `events` list, more than 10,000 events) is refused whole with 422.
    """
    body = await request.body()
    try:
        return await run_in_threadpool(_ingest, session, workspace_id, body)
    except BatchShapeError as exc:
        return JSONResponse(
            {"error": f"invalid usage batch (at most {MAX_BATCH_EVENTS} events): {exc}", "fields": exc.errors},
            status_code=422,
        )
    except ValueError as exc:
        # Not JSON at all (the Rust parser reported it as a shape error; json.loads raises here).
        return JSONResponse({"error": f"invalid usage batch: {exc}", "fields": []}, status_code=422)


@router.get("/v1/subscriptions/{subscription_id}/usage", response_model=SubscriptionUsageOut, responses=_ERRORS)
def subscription_usage(
    subscription_id: int,
    workspace_id: int = Depends(current_workspace),
    session: Session = Depends(db_session),
) -> SubscriptionUsageOut:
    """Usage in the subscription's current period against its plan's limits, exact at this instant
    (aggregated sums plus the events not aggregated yet)."""
    now = datetime.now(UTC)
    row = session.execute(
        text(
            """
            SELECT s.plan_code::text AS plan_code, p.limits, bp.period_start, bp.period_end
            FROM subscriptions s JOIN plans p ON p.code = s.plan_code
            CROSS JOIN LATERAL billing_period_for(s.id, :now) bp
            WHERE s.id = :id AND s.workspace_id = :ws
            """
        ),
        {"id": subscription_id, "ws": workspace_id, "now": now},
    ).one_or_none()
    if row is None:
        raise HTTPException(status_code=404, detail=f"subscription {subscription_id} not found")
    usage = period_usage(session, subscription_id, row.period_start, row.period_end)
    session.rollback()
    metrics = []
    for metric in Metric:
        raw_limit = (row.limits or {}).get(metric.value)
        limit = int(raw_limit) if raw_limit is not None else None
        used = usage[metric]
        metrics.append(
            MetricUsageOut(
                metric=metric,
                used=used,
                limit=limit,
                remaining=max(0, limit - used) if limit is not None else None,
                percent_used=round(100.0 * used / limit, 2) if limit else None,
                status=quota_status(used, limit),
            )
        )
    return SubscriptionUsageOut(
        subscription_id=subscription_id,
        plan=PlanTier(row.plan_code),
        period_start=row.period_start,
        period_end=row.period_end,
        metrics=metrics,
    )
