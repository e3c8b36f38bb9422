"""The outbox against a private broker: the relay's messages are send_task's, a broker outage loses nothing,
an emptied Redis loses nothing. Uses its own redis-server (never the shared one) and its own worker processes,
so no in-process worker may live in this module."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from celery import Celery

from api.client import JobsClient
from api.outbox import BrokerLayout, MessageEncoder, publish_pipelined
from models.core import JobStatus
from tests.api.helpers import UvicornServer, queue_lengths
from tests.support.jobs import job_row, wait_for_job
from tests.support.services import RedisServer, WorkerProcess, wait_until
from workers.ledger import Publishable

GRACE_SECONDS = 1


@pytest.fixture(scope="module")
def broker(db_url: str) -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def api_server(broker: RedisServer) -> Iterator[UvicornServer]:
    server = UvicornServer(env={"REDIS_URL": broker.url}).start()
    yield server
    server.stop()


@pytest.fixture
def client(api_server: UvicornServer, make_workspace: Callable[..., int], make_key: Callable[[int], str]) -> Any:
    with JobsClient(api_server.url, make_key(make_workspace(plan="enterprise"))) as jobs:
        yield jobs


def _celery_on(url: str) -> Celery:
    """This project's Celery configuration, publishing to the private broker."""
    app = Celery("artisan")
    app.config_from_object("celeryconfig")
    app.conf.broker_url = url
    return app


def _worker(broker: RedisServer) -> WorkerProcess:
    return WorkerProcess(
        queues=["default"], concurrency=1, env={"REDIS_URL": broker.url, "REDELIVER_GRACE_SECONDS": str(GRACE_SECONDS)}
    )


def _decoded(raw: bytes) -> dict[str, Any]:
    message = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    message["properties"].pop("delivery_tag")
    return message


def test_the_relay_writes_exactly_what_send_task_writes(broker: RedisServer) -> None:
    app = _celery_on(broker.url)
    client = redis.Redis.from_url(broker.url)
    client.flushall()
    events = client.pubsub()
    events.psubscribe("*celeryev/task.sent")
    wait_until(lambda: events.get_message(timeout=0.2) is not None, 10, 0.05, "the subscription")
    job = Publishable(uuid.uuid4(), "growth.score_churn_risk", {"workspace_id": 7})
    app.send_task(job.task, kwargs=job.args, task_id=str(job.id))
    assert publish_pipelined(client, MessageEncoder(app), BrokerLayout(app), [job]) == 1
    ours, celerys = (_decoded(raw) for raw in client.lrange("analytics", 0, -1))
    assert ours["headers"] == celerys["headers"]
    assert ours == celerys
    sent = [events.get_message(timeout=5) for _ in range(2)]
    assert sent[0] and sent[1] and sent[0]["channel"] == sent[1]["channel"]
    bodies = [_decoded(message["data"]) for message in sent]
    for body in bodies:
        body["body"].pop("clock"), body["body"].pop("timestamp")
    assert bodies[0] == bodies[1]
    events.close()
    client.flushall()


def test_flushall_after_enqueue_the_sweeper_republishes_and_it_runs_once(
    broker: RedisServer, client: JobsClient
) -> None:
    job = client.enqueue("system.ping", {"message": "survives flushall"})
    wait_until(lambda: queue_lengths(broker.url)["default"] >= 1, 30, 0.05, "the relay to publish")
    redis.Redis.from_url(broker.url).flushall()
    assert queue_lengths(broker.url)["default"] == 0
    app = _celery_on(broker.url)
    with _worker(broker):
        wait_until(
            lambda: (datetime.now(UTC) - job_row(job["id"]).enqueued_at).total_seconds() > GRACE_SECONDS + 0.5,
            30,
            0.1,
            "the grace period",
        )
        sweep_id = str(uuid.uuid4())
        app.send_task("system.redeliver_stale", kwargs={}, task_id=sweep_id)
        assert wait_for_job(sweep_id).result["republished"] >= 1
        done = wait_for_job(job["id"])
        assert done.status == JobStatus.SUCCEEDED and done.attempts == 1
        again = str(uuid.uuid4())
        app.send_task("system.redeliver_stale", kwargs={}, task_id=again)
        wait_for_job(again)
        assert wait_for_job(job["id"]).attempts == 1


def test_enqueue_while_the_broker_is_down_is_202_and_the_job_runs_once_it_is_back(
    broker: RedisServer, api_server: UvicornServer, client: JobsClient
) -> None:
    broker.stop()
    ready = httpx.get(f"{api_server.url}/readyz", timeout=30)
    assert ready.status_code == 503 and ready.json()["down"] == ["redis"]
    job = client.enqueue("system.ping", {"message": "through the outage"})
    assert job["status"] == "queued"
    assert job_row(job["id"]).status == JobStatus.QUEUED
    broker.start()
    with _worker(broker):
        done = client.wait(job["id"], timeout=60)
    assert done["status"] == "succeeded" and done["attempts"] == 1
    assert done["result"]["message"] == "through the outage"
    assert httpx.get(f"{api_server.url}/readyz", timeout=30).status_code == 200
