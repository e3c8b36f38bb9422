"""The API as deployed: uvicorn on a real free port, a real worker process, the Python client, and the rate
limit shared by two API processes on one Redis. No in-process worker lives in this module."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from api.client import JobsClient
from tests.api.helpers import UvicornServer
from tests.support.services import WorkerProcess, free_port


@pytest.fixture(scope="module")
def api_server(db_url: str) -> Iterator[UvicornServer]:
    server = UvicornServer().start()
    yield server
    server.stop()


def test_enqueue_over_http_runs_on_a_real_worker_and_the_client_sees_the_outcome(
    api_server: UvicornServer, make_workspace: Callable[..., int], make_key: Callable[[int], str]
) -> None:
    workspace = make_workspace()
    with JobsClient(api_server.url, make_key(workspace)) as jobs, WorkerProcess(queues=["default"]):
        job = jobs.enqueue("system.ping", {"message": "over the wire"}, idempotency_key="wire-1")
        assert job["status"] == "queued" and job["links"]["self"] == f"/v1/jobs/{job['id']}"
        done = jobs.wait(job["id"], timeout=60)
        assert done["status"] == "succeeded" and done["attempts"] == 1
        assert done["result"] == {"message": "over the wire", "job_id": job["id"]}
        assert done["started_at"] is not None and done["finished_at"] >= done["started_at"]
        assert jobs.enqueue("system.ping", {"message": "over the wire"}, idempotency_key="wire-1")["id"] == job["id"]
        assert [item["id"] for item in jobs.list()] == [job["id"]]


def test_the_rate_limit_is_shared_by_two_api_processes(
    api_server: UvicornServer, asgi: Any, make_workspace: Callable[..., int], make_key: Callable[[int], str]
) -> None:
    free = make_workspace(plan="free")
    headers = {"Authorization": f"Bearer {make_key(free)}"}
    statuses: list[int] = []
    started = time.monotonic()
    with httpx.Client(base_url=api_server.url, headers=headers, timeout=30) as remote:
        for i in range(60):
            # Alternate between the uvicorn process and this process's app: one bucket in Redis for both.
            response = remote.get("/v1/jobs") if i % 2 else asgi.get("/v1/jobs", headers=headers)
            statuses.append(response.status_code)
    elapsed = time.monotonic() - started
    granted = statuses.count(200)
    assert set(statuses) == {200, 429}
    # Free: burst 20 and 5 a second in all. Per-process buckets would have granted about 40.
    assert 20 <= granted <= 20 + 5 * elapsed + 1


def test_while_postgresql_is_down_requests_are_503_with_retry_after_and_readyz_names_it(db_url: str) -> None:
    # A 500 tells a client nothing; a 503 with Retry-After is what JobsClient (and any HTTP client) waits out.
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/artisan"
    server = UvicornServer(env={"DATABASE_URL": dead}).start()
    try:
        headers = {"Authorization": f"Bearer ak_{'0' * 12}_{'x' * 43}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
            for response in (
                http.get("/v1/jobs"),
                http.post("/v1/jobs", json={"task": "system.ping", "args": {}}),
            ):
                assert response.status_code == 503, response.text
                assert int(response.headers["Retry-After"]) >= 1
                assert "database" in response.json()["error"] and "5432" not in response.text
            ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["down"] == ["postgresql"]
    finally:
        server.stop()
    assert "Traceback" not in server.log_tail()
