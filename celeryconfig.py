"""Every Celery setting, read from the environment, each with a one-line why."""

from __future__ import annotations

from typing import Any

from kombu import Exchange
from kombu import Queue as KombuQueue

from beat_schedule import BEAT_SCHEDULE
from workers.queues import AREA_QUEUES, QUEUE_TIME_LIMITS, Queue, queue_for
from workers.settings import get_settings

_settings = get_settings()

broker_url = _settings.redis_url
# Outcomes live in the PostgreSQL `jobs` ledger; a result backend would be a second, weaker source of truth.
result_backend = None
task_ignore_result = True

# JSON only: pickle would execute whatever the broker hands us, and the main app is not Python-bound.
task_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
event_serializer = "json"

# UTC everywhere: billing periods and schedules are computed in UTC and converted per workspace.
timezone = "UTC"
enable_utc = True

# Ack after the task ran, and put the message back when the worker process dies: a killed worker loses no job.
task_acks_late = True
task_reject_on_worker_lost = True
# One message at a time per process: a long job never sits on reserved messages another worker could run.
worker_prefetch_multiplier = 1

# Hard time limits per queue (the longest is the analytics hard limit).
LONGEST_HARD_TIME_LIMIT = max(hard for _, hard in QUEUE_TIME_LIMITS.values())
# Redis redelivers an unacked message after this long: it must exceed the longest hard time limit, or a
# running job would be handed to a second worker while the first still works on it.
broker_transport_options: dict[str, Any] = {
    "visibility_timeout": LONGEST_HARD_TIME_LIMIT * 2,
    "socket_timeout": 10,
    "socket_connect_timeout": 5,
    "health_check_interval": 30,
}
# Keep retrying the broker at startup: compose may start workers before Redis accepts connections.
broker_connection_retry_on_startup = True
broker_connection_max_retries = None

# A late-acked task still running when the broker connection drops would be redelivered and run twice.
worker_cancel_long_running_tasks_on_connection_loss = True
# On a warm shutdown (deploy) give running tasks this long before handing them back to the queue.
worker_soft_shutdown_timeout = 10.0

# Recycle pool processes: long-lived processes accumulate memory (pandas-free, but SQLAlchemy/LLM caches grow).
worker_max_tasks_per_child = 1000
worker_max_memory_per_child = 512_000  # KiB

# Task events for Flower: worker-side task events, and "sent" events so queued tasks show up too.
worker_send_task_events = True
task_send_sent_event = True
# Task state STARTED is tracked in the ledger; events already tell Flower when a task starts.
task_track_started = False

# Queues and routes: each area on its queue (DESIGN.md's table).
task_default_queue = Queue.DEFAULT.value
_exchange = Exchange("artisan", type="direct")
task_queues = [KombuQueue(q.value, _exchange, routing_key=q.value) for q in Queue]
task_default_exchange = "artisan"
task_default_routing_key = Queue.DEFAULT.value
task_routes = {f"{area}.*": {"queue": queue.value, "routing_key": queue.value} for area, queue in AREA_QUEUES.items()}


class _TimeLimitsByQueue:
    """Celery has no per-queue time limits; annotate each task with its queue's limits."""

    def annotate(self, task: Any) -> dict[str, int] | None:
        if not task.name or "." not in task.name or task.name.startswith("celery."):
            return None
        soft, hard = QUEUE_TIME_LIMITS[queue_for(task.name)]
        return {"soft_time_limit": soft, "time_limit": hard}


task_annotations = [_TimeLimitsByQueue()]

# Without a result backend, don't wait for results in producers and don't store errors in Redis.
task_store_errors_even_if_ignored = False

beat_schedule = BEAT_SCHEDULE
beat_max_loop_interval = 30

worker_hijack_root_logger = False
worker_redirect_stdouts = False
