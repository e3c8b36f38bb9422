"""A small Python client of the enqueue API for the main app (and the tests).

    from api.client import JobsClient

    with JobsClient("http://jobs.internal:8000", api_key) as jobs:
        job = jobs.enqueue("growth.score_churn_risk", {"workspace_id": 42}, idempotency_key="churn-42-2026-12-06")
        done = jobs.wait(job["id"], timeout=60)
        print(done["status"], done["result"])

429 (rate limit) and 503 (not ready) are retried, waiting what `Retry-After` says. A connection error is retried
for reads, and for an enqueue because every enqueue carries an idempotency key (one is made up when none is
given), so a retried enqueue can never create a second job.
"""

from __future__ import annotations

import email.utils
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
RETRY_STATUSES = frozenset({429, 503})


class ApiError(Exception):
    """A 4xx/5xx answer: `status` and the server's JSON error body (`error`, `task`, `fields`)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('error', body)}")
        self.status = status
        self.body = body


class JobTimeout(TimeoutError):
    def __init__(self, job: dict[str, Any], timeout: float) -> None:
        super().__init__(f"job {job['id']} still {job['status']} after {timeout:.0f} s")
        self.job = job


def retry_after_seconds(value: str | None, default: float) -> float:
    """Retry-After is either delay-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return default
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class JobsClient:
    def __init__(
        self,
        base_url: str = "",
        api_key: str = "",
        *,
        timeout: float = 10.0,
        max_attempts: int = 6,
        max_wait_seconds: float = 30.0,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`http` lets a caller bring its own httpx.Client (a TestClient in tests); it is not closed here."""
        self._owns_http = http is None
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.max_attempts = max_attempts
        self.max_wait_seconds = max_wait_seconds
        self.sleep = sleep

    def __enter__(self) -> JobsClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    # --- the calls ---------------------------------------------------------------------------------------
    def enqueue(
        self,
        task: str,
        args: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        run_at: datetime | None = None,
    ) -> dict[str, Any]:
        """Enqueue a job; returns `{id, task, status, links}`. The same key with the same payload returns the
        existing job; with another payload it raises ApiError(409)."""
        body: dict[str, Any] = {
            "task": task,
            "args": args or {},
            "idempotency_key": idempotency_key or f"client-{uuid.uuid4()}",
        }
        if run_at is not None:
            if run_at.tzinfo is None:
                raise ValueError("run_at must be timezone-aware")
            body["run_at"] = run_at.isoformat()
        return self._request("POST", "/v1/jobs", json=body, safe_to_resend=True)

    def get(self, job_id: str | uuid.UUID) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}", safe_to_resend=True)

    def cancel(self, job_id: str | uuid.UUID) -> dict[str, Any]:
        return self._request("DELETE", f"/v1/jobs/{job_id}", safe_to_resend=False)

    def list(self, *, status: str | None = None, task: str | None = None, limit: int = 50) -> Iterator[dict[str, Any]]:
        """Every job of the key's workspace, newest first, following the cursor page by page."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if task:
            params["task"] = task
        while True:
            page = self._request("GET", "/v1/jobs", params=params, safe_to_resend=True)
            yield from page["items"]
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def wait(self, job_id: str | uuid.UUID, timeout: float = 60.0, poll_seconds: float = 0.1) -> dict[str, Any]:
        """Poll until the job is succeeded, failed or cancelled; JobTimeout after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        interval = poll_seconds
        while True:
            job = self.get(job_id)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() >= deadline:
                raise JobTimeout(job, timeout)
            self.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(interval * 1.5, 2.0)

    # --- transport ---------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, safe_to_resend: bool, **kwargs: Any) -> dict[str, Any]:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.http.request(method, path, headers=self.headers, **kwargs)
            except httpx.TransportError:
                if not safe_to_resend or attempt >= self.max_attempts:
                    raise
                self.sleep(min(self.max_wait_seconds, 0.2 * 2**attempt))
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.max_attempts:
                wait = retry_after_seconds(response.headers.get("Retry-After"), default=0.2 * 2**attempt)
                self.sleep(min(self.max_wait_seconds, wait))
                continue
            try:
                body = response.json()
            except ValueError:
                body = {"error": response.text[:500]}
            if response.status_code >= 400:
                raise ApiError(response.status_code, body)
            return body
