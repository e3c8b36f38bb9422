"""The FastAPI app: every router under api/routes, JSON errors, a body size limit and request metrics."""

from __future__ import annotations

import importlib
import pkgutil
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import api.routes
from workers.logging import configure_logging
from workers.metrics import HTTP_LATENCY, QueueDepthCollector
from workers.settings import get_settings


class BodyLimit:
    """Refuse bodies over the limit with 413 before they are parsed (Content-Length or streamed size)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        response = JSONResponse({"error": f"request body over {self.max_bytes} bytes"}, status_code=413)
        await response(
            {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}, _no_body, send
        )


class _TooLarge(Exception):
    pass


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _field_errors(exc: RequestValidationError) -> tuple[str | None, list[dict[str, Any]]]:
    task: str | None = None
    fields = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        # A discriminated union puts the task name in the location: body -> <task> -> args -> field.
        if len(loc) >= 2 and loc[0] == "body" and "." in loc[1]:
            task = loc[1]
            loc = loc[2:]
        elif loc and loc[0] == "body":
            loc = loc[1:]
        fields.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid"), "type": err.get("type")})
    return task, fields


def create_app() -> FastAPI:
    configure_logging()
    settings = get_settings()
    app = FastAPI(
        title="Artisan Jobs",
        version="1.0.0",
        description="Enqueue jobs for the Artisan job backend and read their outcomes from the ledger.",
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

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.middleware("http")
    async def _latency(request: Request, call_next: Any) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        HTTP_LATENCY.labels(request.method, path, str(response.status_code)).observe(time.perf_counter() - started)
        return response

    for module in pkgutil.iter_modules(api.routes.__path__):
        app.include_router(importlib.import_module(f"api.routes.{module.name}").router)

    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    _register_queue_depths(settings.redis_url)
    return app


_queue_collector: QueueDepthCollector | None = None


def _register_queue_depths(redis_url: str) -> None:
    global _queue_collector
    if _queue_collector is None:
        _queue_collector = QueueDepthCollector(redis_url)
        REGISTRY.register(_queue_collector)


app = create_app()
