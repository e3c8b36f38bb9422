"""A bare Celery app with no-op tasks: the baselines our job base and API are measured against (same broker, same
pool, same event settings)."""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

bare = Celery("bare", broker=os.environ["REDIS_URL"])
bare.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue="bare",
    worker_hijack_root_logger=False,
    # The same event traffic as our workers send for Flower, so the comparison isolates the job base.
    worker_send_task_events=True,
    task_send_sent_event=True,
)
LATENCY_KEY = "bench:soak:bare-latency"
_counter = redis.Redis.from_url(os.environ["REDIS_URL"])


@bare.task(name="bare.noop")
def noop(run: str) -> None:
    # The only work: tell the benchmark it ran (a bare task has no ledger to look at).
    _counter.incr(f"bench:bare:{run}")


@bare.task(name="bare.soak_noop")
def soak_noop(sent_at: float) -> None:
    # The soak's baseline: record only the send-to-done latency.
    _counter.rpush(LATENCY_KEY, time.time() - sent_at)
