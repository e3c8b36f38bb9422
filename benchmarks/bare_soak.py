"""The soak's bare baseline: a Celery app whose no-op task only records its send-to-done latency in Redis."""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

LATENCY_KEY = "bench:soak:bare-latency"

bare = Celery("bare-soak", broker=os.environ["REDIS_URL"])
bare.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue="bare-soak",
    worker_hijack_root_logger=False,
    # The same event traffic our workers send for Flower, so the comparison isolates API, ledger and job base.
    worker_send_task_events=True,
    task_send_sent_event=True,
)
_redis = redis.Redis.from_url(os.environ["REDIS_URL"])


@bare.task(name="bare.soak_noop")
def soak_noop(sent_at: float) -> None:
    _redis.rpush(LATENCY_KEY, time.time() - sent_at)
