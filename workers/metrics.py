"""Prometheus metrics shared by the API and the workers, and the queue depths Flower does not export."""

from __future__ import annotations

import redis
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from workers.queues import Queue

JOBS_ENQUEUED = Counter(
    "artisan_jobs_enqueued_total", "Jobs offered to the enqueue API, by task and outcome", ["task", "outcome"]
)
HTTP_LATENCY = Histogram(
    "artisan_http_request_seconds",
    "Enqueue API request latency by route and status",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
OUTBOX_PUBLISHED = Counter("artisan_outbox_published_total", "Ledger rows the API's outbox relay published")
OUTBOX_FAILURES = Counter(
    "artisan_outbox_publish_failures_total", "Relay batches that failed to reach the broker (kept and retried)"
)
OUTBOX_PENDING = Gauge("artisan_outbox_pending", "Committed ledger rows waiting in the API's outbox relay")
RATE_LIMITED = Counter("artisan_rate_limited_total", "Requests refused with 429, by plan", ["plan"])
READY = Gauge("artisan_dependency_up", "Whether a dependency answered the last readiness check", ["dependency"])


class QueueDepthCollector(Collector):
    """LLEN of every Celery queue at scrape time (kombu keeps one Redis list per queue and priority)."""

    def __init__(self, redis_url: str) -> None:
        self._client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)

    def collect(self):
        family = GaugeMetricFamily("artisan_queue_depth", "Messages waiting in each Celery queue", labels=["queue"])
        try:
            for queue in Queue:
                family.add_metric([queue.value], float(queue_depth(self._client, queue.value)))
        except redis.RedisError:
            return
        yield family


def queue_depth(client: redis.Redis, queue: str) -> int:
    # kombu's Redis transport stores priority sub-queues as "<queue>\x06\x16<priority>" lists.
    keys = [queue] + [f"{queue}\x06\x16{p}" for p in (1, 2, 3, 4, 5, 6, 7, 8, 9)]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.llen(key)
    return int(sum(pipe.execute()))
