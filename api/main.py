"""The FastAPI app: every router under api/routes, JSON errors, a body size limit and request metrics."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY
from sqlalchemy import exc as sa_exc
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import api.routes
from api.deps import token_bucket
from api.outbox import relay
from api.store import ledger
from workers.logging import configure_logging
from workers.metrics import HTTP_LATENCY, QueueDepthCollector
from workers.settings import get_settings

log = logging.getLogger("artisan.api")

# PostgreSQL unreachable, restarting or every pooled connection busy (PoolTimeout is a psycopg.OperationalError):
# the request can succeed shortly, so 503 with Retry-After, which clients wait out, rather than a 500.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)
DATABASE_RETRY_AFTER_SECONDS = 2


class BodyLimit:
    """Refuse bodies over the limit with 413 before they are parsed (Content-Length or streamed size)."""

    def __init__(self, app: ASGIApp, max_bytes: int, path_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.default_max_bytes = max_bytes
        # Batch routes whose contract allows more (10,000 usage events) get their own, larger cap.
        self.path_limits = path_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.path_limits.get(scope.get("path", ""), self.default_max_bytes)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await self._too_large(send, max_bytes)
            return
        if declared is not None:
            # The server reads exactly Content-Length bytes, so a declared size within the limit is the size.
            await self.app(scope, receive, send)
            return
        # No length declared (chunked): read up to the limit here, then hand the app the buffered body. Raising
        # from inside the app's receive would not work: FastAPI turns any error while parsing a body into a 400.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_bytes:
                await self._too_large(send, max_bytes)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _too_large(self, send: Send, max_bytes: int) -> None:
        error = f"request body over {max_bytes} bytes"
        body = {"error": error, "task": None, "fields": [{"field": "body", "message": error, "type": "too_large"}]}
        response = JSONResponse(body, status_code=413)
        await response(
            {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}, _no_body, send
        )


class Latency:
    """Request latency by route template and status (plain ASGI: BaseHTTPMiddleware costs a task per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            HTTP_LATENCY.labels(scope["method"], route, str(status)).observe(time.perf_counter() - started)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _field_errors(exc: RequestValidationError) -> tuple[str | None, list[dict[str, Any]]]:
    task: str | None = None
    fields = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):
            # The discriminator: the task name is unknown (or missing) among the ones this API accepts.
            tag = (err.get("ctx") or {}).get("tag")
            message = f"unknown task {tag!r}" if tag else "task is required"
            fields.append({"field": "task", "message": message, "type": err.get("type")})
            continue
        if err.get("type") == "json_invalid":
            # The location is a character offset into the body, not a field.
            fields.append({"field": "body", "message": err.get("msg", "invalid JSON"), "type": "json_invalid"})
            continue
        # A discriminated union puts the task name in the location: body -> <task> -> args -> field.
        if len(loc) >= 2 and loc[0] == "body" and "." in loc[1]:
            task = loc[1]
            loc = loc[2:]
        elif loc and loc[0] == "body":
            loc = loc[1:]
        fields.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid"), "type": err.get("type")})
    return task, fields


@asynccontextmanager
async def _lifespan(_: FastAPI) -> AsyncIterator[None]:
    await ledger.start()
    await token_bucket().start()
    try:
        yield
    finally:
        # Publish what the relay still holds (anything left stays queued in the ledger for the sweeper).
        if not await run_in_threadpool(relay.flush, 5.0):
            log.warning("event=outbox-not-drained pending=%d left-to=sweeper", relay.pending)
        await token_bucket().close()
        await ledger.close()


def create_app() -> FastAPI:
    configure_logging()
    settings = get_settings()
    app = FastAPI(
        title="Artisan Jobs",
        version="1.0.0",
        description="Enqueue jobs for the Artisan job backend and read their outcomes from the ledger.",
        lifespan=_lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        task, fields = _field_errors(exc)
        if task is None:
            body = exc.body if isinstance(exc.body, dict) else None
            task = body.get("task") if body and isinstance(body.get("task"), str) else None
        names = ", ".join(f["field"] for f in fields)
        message = f"invalid request for {task}: {names}" if task else f"invalid request: {names}"
        return JSONResponse({"error": message, "task": task, "fields": fields}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # A dict detail is already the error body (task and fields named); anything else becomes its message.
        body = exc.detail if isinstance(exc.detail, dict) else {"error": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The type only: a driver message names hosts and ports, and a DETAIL may quote row values.
        log.warning("event=database-unavailable method=%s error=%s", request.method, type(exc).__name__)
        return JSONResponse(
            {"error": "the database is unavailable; retry shortly", "task": None, "fields": []},
            status_code=503,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )

    for unavailable in DATABASE_UNAVAILABLE:
        app.add_exception_handler(unavailable, _database_unavailable)

    for module in pkgutil.iter_modules(api.routes.__path__):
        app.include_router(importlib.import_module(f"api.routes.{module.name}").router)

    app.add_middleware(
        BodyLimit,
        max_bytes=settings.api_max_body_bytes,
        path_limits={"/v1/usage/events": settings.api_max_usage_body_bytes},
    )
    app.add_middleware(Latency)
    _register_queue_depths(settings.redis_url)
    return app


_queue_collector: QueueDepthCollector | None = None


def _register_queue_depths(redis_url: str) -> None:
    global _queue_collector
    if _queue_collector is None:
        _queue_collector = QueueDepthCollector(redis_url)
        REGISTRY.register(_queue_collector)


app = create_app()
