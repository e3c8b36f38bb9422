"""The enqueue API through ASGI with a real in-process worker: auth, validation, tenancy, idempotency, cancel,
pagination, scheduled jobs, health, metrics and rate limits."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from prometheus_client import REGISTRY
from sqlalchemy import update

from api.client import ApiError, JobsClient, JobTimeout
from api.deps import key_cache
from api.outbox import relay
from models.core import ApiKey, Job, JobStatus
from tests.api.helpers import ledger_count
from tests.support.env import ROOT
from tests.support.jobs import job_row, run_job, wait_for_job
from tests.support.services import wait_until
from workers.db import session_scope
from workers.ledger import record_jobs, sweep_stale


@pytest.fixture(autouse=True)
def _worker(celery_worker: Any) -> None:
    """Every test here runs with the module's real in-process worker consuming all queues."""


@pytest.fixture
def workspace(make_workspace: Callable[..., int]) -> int:
    return make_workspace(plan="enterprise")


@pytest.fixture
def headers(workspace: int, make_key: Callable[[int], str], auth: Callable[[str], dict[str, str]]) -> dict[str, str]:
    return auth(make_key(workspace))


def _published() -> float:
    assert relay.flush(30)
    return REGISTRY.get_sample_value("artisan_outbox_published_total") or 0.0


def _post(asgi: Any, headers: dict[str, str], body: dict[str, Any]) -> Any:
    return asgi.post("/v1/jobs", json=body, headers=headers)


# --- the document ---------------------------------------------------------------------------------------------
def test_openapi_documents_every_route_and_each_tasks_payload(asgi: Any) -> None:
    document = asgi.get("/openapi.json").json()
    paths = document["paths"]
    assert {"post", "get"} <= set(paths["/v1/jobs"])
    assert {"get", "delete"} <= set(paths["/v1/jobs/{job_id}"])
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "get" in paths[path]
    body = paths["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    mapping = body["discriminator"]["mapping"]
    assert {"system.ping", "growth.score_churn_risk", "ai.scan_content", "workflows.execute"} <= set(mapping)
    # Operator-wide tasks (no workspace_id) and hidden ones are not offered to a tenant's key.
    assert "system.redeliver_stale" not in mapping and "billing.generate_invoice" not in mapping
    scan = document["components"]["schemas"][mapping["ai.scan_content"].rsplit("/", 1)[-1]]
    assert set(scan["required"]) >= {"task", "args"}
    assert {"200", "202", "401", "403", "409", "413", "422", "429"} <= set(paths["/v1/jobs"]["post"]["responses"])
    assert {"200", "401", "404"} <= set(paths["/v1/jobs/{job_id}"]["get"]["responses"])


# --- auth -------------------------------------------------------------------------------------------------------
def test_no_bad_or_revoked_key_is_401(asgi: Any, workspace: int, make_key: Callable[[int], str]) -> None:
    ping = {"task": "system.ping", "args": {}}
    assert asgi.post("/v1/jobs", json=ping).status_code == 401
    assert asgi.get("/v1/jobs", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    key = make_key(workspace)
    prefix = key.split("_")[1]
    forged = f"ak_{prefix}_{'A' * 43}"
    assert asgi.get("/v1/jobs", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    good = {"Authorization": f"Bearer {key}"}
    assert asgi.get("/v1/jobs", headers=good).status_code == 200
    with session_scope() as s:
        s.execute(update(ApiKey).where(ApiKey.prefix == prefix).values(revoked_at=datetime.now(UTC)))
    # A verified key is cached for KEY_CACHE_SECONDS; revocation is effective once that entry is gone.
    key_cache.clear()
    response = asgi.get("/v1/jobs", headers=good)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert ledger_count(workspace) == 0


def test_create_api_key_command_prints_a_working_key_and_revoke_disables_it(asgi: Any) -> None:
    name = f"cli-{uuid.uuid4().hex[:10]}"
    run = [sys.executable, "-m", "workers"]
    created = subprocess.run(
        [*run, "create-api-key", "--workspace", name],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("ak_") and len(key.split("_", 2)[2]) >= 43
    headers = {"Authorization": f"Bearer {key}"}
    accepted = _post(asgi, headers, {"task": "system.ping", "args": {"message": "from the cli key"}})
    assert accepted.status_code == 202
    assert wait_for_job(accepted.json()["id"]).status == JobStatus.SUCCEEDED
    revoked = subprocess.run(
        [*run, "revoke-api-key", key.split("_")[1]],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert revoked.returncode == 0, revoked.stderr
    key_cache.clear()
    assert asgi.get("/v1/jobs", headers=headers).status_code == 401


# --- validation -------------------------------------------------------------------------------------------------
def _assert_error(response: Any, status: int, task: str | None, field: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["task"] == task
    assert field in [f["field"] for f in body["fields"]], body
    assert field in body["error"] or status == 413


def test_bad_requests_are_4xx_naming_task_and_field_and_nothing_is_written_or_published(
    asgi: Any, workspace: int, headers: dict[str, str]
) -> None:
    before = _published()
    now = datetime.now(UTC).isoformat()
    _assert_error(_post(asgi, headers, {"task": "billing.nope", "args": {}}), 422, "billing.nope", "task")
    _assert_error(_post(asgi, headers, {"args": {}}), 422, None, "task")
    missing = {"task": "ai.scan_content", "args": {"channel": "email"}}
    _assert_error(_post(asgi, headers, missing), 422, "ai.scan_content", "args.content")
    extra = {"task": "system.ping", "args": {"message": "x", "colour": "red"}}
    _assert_error(_post(asgi, headers, extra), 422, "system.ping", "args.colour")
    mistyped = {"task": "system.ping", "args": {"sleep_seconds": "soon"}}
    _assert_error(_post(asgi, headers, mistyped), 422, "system.ping", "args.sleep_seconds")
    milestone = {"task": "growth.record_milestone", "args": {"milestone": "first_campaign", "occurred_at": "yesterday"}}
    _assert_error(_post(asgi, headers, milestone), 422, "growth.record_milestone", "args.occurred_at")
    naive = {"task": "system.ping", "args": {}, "run_at": now.replace("+00:00", "")}
    _assert_error(_post(asgi, headers, naive), 422, "system.ping", "run_at")
    top_extra = {"task": "system.ping", "args": {}, "priority": 9}
    _assert_error(_post(asgi, headers, top_extra), 422, "system.ping", "priority")
    not_json = asgi.post(
        "/v1/jobs", content=b"task=system.ping", headers={**headers, "Content-Type": "application/json"}
    )
    _assert_error(not_json, 422, None, "body")
    huge = {"task": "system.ping", "args": {"message": "x" * (1024 * 1024 + 10)}}
    _assert_error(_post(asgi, headers, huge), 413, None, "body")

    def chunks() -> Iterator[bytes]:
        yield b'{"task": "system.ping", "args": {"message": "'
        for _ in range(20):
            yield b"y" * 65536
        yield b'"}}'

    streamed = asgi.post("/v1/jobs", content=chunks(), headers={**headers, "Content-Type": "application/json"})
    _assert_error(streamed, 413, None, "body")
    assert ledger_count(workspace) == 0
    assert _published() == before


def test_args_naming_another_workspace_are_403_and_a_left_out_workspace_is_the_keys(
    asgi: Any, workspace: int, headers: dict[str, str], make_workspace: Callable[..., int]
) -> None:
    other = make_workspace()
    response = _post(asgi, headers, {"task": "growth.score_churn_risk", "args": {"workspace_id": other}})
    _assert_error(response, 403, "growth.score_churn_risk", "args.workspace_id")
    assert ledger_count(other) == 0 and ledger_count(workspace) == 0
    # growth.score_churn_risk without a workspace means "every workspace": through the API it means the key's.
    accepted = _post(asgi, headers, {"task": "growth.score_churn_risk", "args": {}})
    assert accepted.status_code == 202
    assert job_row(accepted.json()["id"]).args == {"workspace_id": workspace}


def test_another_workspaces_job_is_404_like_a_missing_one(
    asgi: Any, headers: dict[str, str], make_workspace: Callable[..., int], make_key: Callable[[int], str]
) -> None:
    theirs = make_workspace()
    their_headers = {"Authorization": f"Bearer {make_key(theirs)}"}
    job_id = _post(asgi, their_headers, {"task": "system.ping", "args": {"message": "private"}}).json()["id"]
    for method in ("GET", "DELETE"):
        foreign = asgi.request(method, f"/v1/jobs/{job_id}", headers=headers)
        missing = asgi.request(method, f"/v1/jobs/{uuid.uuid4()}", headers=headers)
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json() == missing.json()
    assert asgi.get("/v1/jobs", headers=headers).json()["items"] == []
    assert asgi.get(f"/v1/jobs/{job_id}", headers=their_headers).status_code == 200


# --- idempotency ------------------------------------------------------------------------------------------------
def test_the_same_key_and_payload_return_the_job_and_another_payload_is_409(
    asgi: Any,
    workspace: int,
    headers: dict[str, str],
    make_workspace: Callable[..., int],
    make_key: Callable[[int], str],
) -> None:
    body = {"task": "system.ping", "args": {"message": "once"}, "idempotency_key": "order-17"}
    first = _post(asgi, headers, body)
    again = _post(asgi, headers, body)
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    conflict = _post(asgi, headers, {**body, "args": {"message": "twice"}})
    assert conflict.status_code == 409 and first.json()["id"] in conflict.json()["error"]
    assert ledger_count(workspace) == 1
    # The key is unique per workspace: another tenant's use of it is its own job.
    other = {"Authorization": f"Bearer {make_key(make_workspace())}"}
    assert _post(asgi, other, body).json()["id"] != first.json()["id"]
    assert wait_for_job(first.json()["id"]).attempts == 1


def test_concurrent_posts_with_one_key_make_one_job_published_once(asgi: Any, headers: dict[str, str]) -> None:
    body = {"task": "system.ping", "args": {"message": "raced"}, "idempotency_key": f"race-{uuid.uuid4().hex}"}
    before = _published()
    start = threading.Barrier(8)

    def post() -> Any:
        start.wait(30)
        return _post(asgi, headers, body)

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: post(), range(8)))
    assert sorted(r.status_code for r in responses) == [200] * 7 + [202]
    assert len({r.json()["id"] for r in responses}) == 1
    assert _published() == before + 1
    assert wait_for_job(responses[0].json()["id"]).attempts == 1


# --- cancel -------------------------------------------------------------------------------------------------------
def test_cancel_a_queued_job_and_a_later_delivery_is_skipped(asgi: Any, headers: dict[str, str]) -> None:
    from workers.app import app

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    job_id = _post(asgi, headers, {"task": "system.ping", "args": {}, "run_at": later}).json()["id"]
    cancelled = asgi.delete(f"/v1/jobs/{job_id}", headers=headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    app.send_task("system.ping", kwargs={}, task_id=job_id)
    marker = _post(asgi, headers, {"task": "system.ping", "args": {"message": "after"}}).json()["id"]
    wait_for_job(marker)
    row = wait_for_job(job_id)
    assert row.status == JobStatus.CANCELLED and row.attempts == 0 and row.started_at is None
    again = asgi.delete(f"/v1/jobs/{job_id}", headers=headers)
    assert again.status_code == 409 and "cancelled" in again.json()["error"]


def test_cancel_a_running_or_finished_job_is_409(asgi: Any, headers: dict[str, str]) -> None:
    job_id = _post(asgi, headers, {"task": "system.ping", "args": {"sleep_seconds": 3}}).json()["id"]
    wait_for_job(job_id, status="running")
    running = asgi.delete(f"/v1/jobs/{job_id}", headers=headers)
    assert running.status_code == 409 and "running" in running.json()["error"]
    assert wait_for_job(job_id).status == JobStatus.SUCCEEDED
    finished = asgi.delete(f"/v1/jobs/{job_id}", headers=headers)
    assert finished.status_code == 409 and "succeeded" in finished.json()["error"]


# --- listing ------------------------------------------------------------------------------------------------------
def test_listing_is_newest_first_and_cursor_paginated(asgi: Any, headers: dict[str, str]) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = [
        _post(asgi, headers, {"task": "system.ping", "args": {"message": f"n{i}"}, "run_at": later}).json()["id"]
        for i in range(7)
    ]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = asgi.get("/v1/jobs", params=params, headers=headers).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == list(reversed(created))
    asgi.delete(f"/v1/jobs/{created[0]}", headers=headers)
    cancelled = asgi.get("/v1/jobs", params={"status": "cancelled"}, headers=headers).json()["items"]
    assert [item["id"] for item in cancelled] == [created[0]]
    assert asgi.get("/v1/jobs", params={"task": "ai.scan_content"}, headers=headers).json()["items"] == []
    assert asgi.get("/v1/jobs", params={"cursor": "garbage"}, headers=headers).status_code == 422


def test_jobs_enqueued_together_page_by_id_and_none_is_skipped_or_repeated(
    asgi: Any, workspace: int, headers: dict[str, str]
) -> None:
    # Children of one fan-out share their transaction's enqueued_at: the cursor's id breaks the tie.
    later = datetime.now(UTC) + timedelta(hours=1)
    with session_scope() as s:
        created = record_jobs(
            s, "system.ping", [({"message": f"c{i}"}, f"tie-{i}") for i in range(5)], default_workspace_id=workspace
        )
        s.execute(update(Job).where(Job.id.in_([c.id for c in created])).values(run_at=later))
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = asgi.get("/v1/jobs", params=params, headers=headers).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted((str(c.id) for c in created), key=uuid.UUID, reverse=True)


# --- scheduled jobs -----------------------------------------------------------------------------------------------
def _swept_ids(now: datetime) -> set[str]:
    """What the sweeper would publish at `now`; rolled back, so the ledger is left as it was."""
    with freeze_time(now), session_scope() as s:
        ids = {str(p.id) for p in sweep_stale(s, grace=timedelta(seconds=300), max_running=timedelta(hours=1))}
        s.rollback()
    return ids


def test_run_at_is_stored_not_published_and_the_sweeper_takes_it_when_due(asgi: Any, headers: dict[str, str]) -> None:
    start = datetime.now(UTC)
    run_at = start + timedelta(hours=1)
    before = _published()
    job_id = _post(asgi, headers, {"task": "system.ping", "args": {}, "run_at": run_at.isoformat()}).json()["id"]
    assert _published() == before
    row = job_row(job_id)
    assert row.run_at == run_at and row.published_at is None and row.status == JobStatus.QUEUED
    assert job_id not in _swept_ids(start + timedelta(minutes=59))
    assert job_id in _swept_ids(run_at + timedelta(seconds=1))
    assert job_row(job_id).published_at is None


def test_a_scheduled_job_is_delivered_by_a_real_worker_once_due(asgi: Any, headers: dict[str, str]) -> None:
    run_at = datetime.now(UTC) + timedelta(seconds=2)
    job_id = _post(asgi, headers, {"task": "system.ping", "args": {"message": "later"}, "run_at": run_at.isoformat()})
    job_id = job_id.json()["id"]
    wait_until(lambda: datetime.now(UTC) > run_at, 30, 0.1, "run_at to pass")
    sweep = run_job("system.redeliver_stale")
    assert sweep.status == JobStatus.SUCCEEDED and sweep.result["republished"] >= 1
    row = wait_for_job(job_id)
    assert row.status == JobStatus.SUCCEEDED and row.attempts == 1 and row.started_at >= run_at
    assert row.result["message"] == "later"


# --- health and metrics -----------------------------------------------------------------------------------------
def test_readyz_names_what_is_down(asgi: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import create_engine

    import api.routes.health as health
    from tests.support.services import free_port
    from workers.settings import get_settings

    assert asgi.get("/healthz").json() == {"status": "ok"}
    ready = asgi.get("/readyz")
    assert ready.status_code == 200 and ready.json()["down"] == []
    settings = get_settings().model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    monkeypatch.setattr(health, "get_settings", lambda: settings)
    down = asgi.get("/readyz")
    assert down.status_code == 503 and down.json()["down"] == ["redis"]
    dead = create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x", connect_args={"connect_timeout": 2}
    )
    monkeypatch.setattr(health, "get_engine", lambda: dead)
    both = asgi.get("/readyz").json()
    assert both["down"] == ["postgresql", "redis"] and both["checks"]["postgresql"].startswith("down")


def test_metrics_export_enqueue_counters_latency_and_queue_depths(asgi: Any, headers: dict[str, str]) -> None:
    _post(asgi, headers, {"task": "system.ping", "args": {}})
    _post(asgi, headers, {"task": "system.ping", "args": {}, "idempotency_key": "m"})
    _post(asgi, headers, {"task": "system.ping", "args": {}, "idempotency_key": "m"})
    _post(asgi, headers, {"task": "system.ping", "args": {"message": "x"}, "idempotency_key": "m"})
    text = asgi.get("/metrics").text
    for outcome in ("accepted", "duplicate", "conflict"):
        assert f'artisan_jobs_enqueued_total{{outcome="{outcome}",task="system.ping"}}' in text
    assert 'artisan_http_request_seconds_bucket{le="0.005",method="POST",route="/v1/jobs",status="202"}' in text
    for queue in ("billing", "analytics", "default", "ai"):
        assert f'artisan_queue_depth{{queue="{queue}"}}' in text
    assert "artisan_outbox_pending" in text


# --- rate limits --------------------------------------------------------------------------------------------------
def test_plan_limits_come_from_the_plans_table_lowest_for_free(make_workspace: Callable[..., int]) -> None:
    from api.ratelimit import PlanLimits
    from workers.db import get_engine

    limits = PlanLimits()
    found = {plan: limits.load(get_engine(), make_workspace(plan=plan)) for plan in ("free", "starter", "enterprise")}
    no_plan = limits.load(get_engine(), make_workspace(plan=None))
    assert found["free"].burst < found["starter"].burst < found["enterprise"].burst
    assert found["free"].rate_per_second < found["starter"].rate_per_second < found["enterprise"].rate_per_second
    assert no_plan == found["free"]


def test_over_the_plans_burst_is_429_with_retry_after(
    asgi: Any, make_workspace: Callable[..., int], make_key: Callable[[int], str]
) -> None:
    free = make_workspace(plan="free")
    headers = {"Authorization": f"Bearer {make_key(free)}"}
    started = time.monotonic()
    statuses = [asgi.get("/v1/jobs", params={"limit": 1}, headers=headers) for _ in range(60)]
    elapsed = time.monotonic() - started
    ok = sum(1 for r in statuses if r.status_code == 200)
    refused = [r for r in statuses if r.status_code == 429]
    # Free: burst 20, 5 tokens a second; whatever the machine's speed, no more than that is granted.
    assert 20 <= ok <= 20 + 5 * elapsed + 1
    assert refused and int(refused[0].headers["Retry-After"]) >= 1
    assert "free" in refused[0].json()["error"]


def test_the_client_waits_out_429_as_retry_after_says(
    jobs_client: Callable[..., JobsClient], make_workspace: Callable[..., int]
) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    client = jobs_client(make_workspace(plan="free"), sleep=sleep)
    ids = [client.enqueue("system.ping", {"message": f"burst {i}"})["id"] for i in range(25)]
    assert any(w >= 1 for w in waits)
    assert len(set(ids)) == 25
    assert client.wait(ids[-1], timeout=60)["status"] == "succeeded"
    assert sum(1 for _ in client.list(limit=10)) == 25


def test_the_client_raises_clear_errors(
    jobs_client: Callable[..., JobsClient], make_workspace: Callable[..., int]
) -> None:
    client = jobs_client(make_workspace())
    with pytest.raises(ApiError) as invalid:
        client.enqueue("system.ping", {"sleep_seconds": -1})
    assert invalid.value.status == 422 and invalid.value.body["fields"][0]["field"] == "args.sleep_seconds"
    later = datetime.now(UTC) + timedelta(hours=1)
    job = client.enqueue("system.ping", {}, idempotency_key="k", run_at=later)
    assert client.enqueue("system.ping", {}, idempotency_key="k", run_at=later)["id"] == job["id"]
    with pytest.raises(JobTimeout):
        client.wait(job["id"], timeout=0.3)
    assert client.cancel(job["id"])["status"] == "cancelled"
    with pytest.raises(ApiError) as missing:
        client.get(uuid.uuid4())
    assert missing.value.status == 404
    with session_scope() as s:
        assert s.get(Job, uuid.UUID(job["id"])).status == JobStatus.CANCELLED
