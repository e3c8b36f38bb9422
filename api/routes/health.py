"""Liveness, readiness (PostgreSQL and Redis reachable) and Prometheus metrics."""

from __future__ import annotations

import redis
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from workers.db import get_engine
from workers.metrics import READY
from workers.settings import get_settings

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "a dependency is down"}})
def readyz() -> JSONResponse:
    """PostgreSQL and Redis both answer; otherwise 503 naming what is down."""
    checks: dict[str, str] = {}
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["postgresql"] = "ok"
    except Exception as exc:
        checks["postgresql"] = f"down: {type(exc).__name__}"
    try:
        client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        checks["redis"] = "ok"
    except redis.RedisError as exc:
        checks["redis"] = f"down: {type(exc).__name__}"
    down = sorted(name for name, state in checks.items() if state != "ok")
    for name, state in checks.items():
        READY.labels(dependency=name).set(1 if state == "ok" else 0)
    status = 503 if down else 200
    return JSONResponse({"status": "ready" if not down else "not ready", "down": down, "checks": checks}, status)


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    """Prometheus text format: jobs enqueued by task and outcome, request latency, queue depths."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
