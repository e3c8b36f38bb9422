"""The bare baseline of bench_api: a FastAPI endpoint that only calls send_task (no auth, no validation, no
ledger, no rate limit). Same Celery app and configuration as the real API, so the publish costs the same."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI, Request

from workers.app import app as celery_app

app = FastAPI(title="bare send_task baseline")


@app.post("/v1/jobs", status_code=202)
async def enqueue(request: Request) -> dict[str, Any]:
    body = await request.json()
    task_id = str(uuid.uuid4())
    # Inline on the event loop: the cheapest way to call send_task (no thread hop per request).
    celery_app.send_task(body["task"], kwargs=body.get("args") or {}, task_id=task_id)
    return {"id": task_id, "task": body["task"], "status": "queued"}
