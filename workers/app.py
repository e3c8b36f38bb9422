"""The Celery app: configuration from celeryconfig.py, every area's tasks, and the process signals."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from billiard.exceptions import TimeLimitExceeded
from celery import Celery, signals

from workers.contracts import import_area_modules
from workers.logging import configure_logging

app = Celery("artisan")
app.config_from_object("celeryconfig")

log = logging.getLogger("artisan.jobs")


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    # Our own format (task id, event, no argument values) instead of Celery's root-logger takeover.
    configure_logging()


@signals.worker_init.connect
@signals.worker_process_init.connect
def _fresh_engine_after_fork(**_: Any) -> None:
    # A pool child must not reuse the connections it inherited from the parent process; and in a worker, a stale
    # connection is a transient error the job base retries, so the pre-ping round trip is not worth its cost.
    from workers.db import use_pre_ping

    use_pre_ping(False)


@signals.task_failure.connect
def _record_hard_time_limit(sender: Any = None, task_id: str | None = None, exception: Any = None, **_: Any) -> None:
    # A hard time limit kills the pool process: the task body never gets to write its outcome, so the parent does.
    if not isinstance(exception, TimeLimitExceeded) or task_id is None:
        return
    from workers.jobtask import mark_failed

    try:
        mark_failed(uuid.UUID(task_id), f"hard time limit exceeded ({exception})")
    except Exception as exc:
        log.error("job=%s event=ledger-unavailable error=%s", task_id, type(exc).__name__)


import_area_modules("args")
import_area_modules("jobs")
from workers import consumer_guard, monitoring  # noqa: E402, F401 - dead letters and metrics hook the worker's signals
