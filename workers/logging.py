"""Structured log lines: `key=value` pairs with the task id; argument values are never logged."""

from __future__ import annotations

import logging
import sys

from workers.settings import get_settings

_configured = False


def configure_logging() -> None:
    global _configured
    if _configured:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("ts=%(asctime)s level=%(levelname)s logger=%(name)s process=%(processName)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(get_settings().log_level)
    # The OpenAI SDK and httpx log request bodies at DEBUG; keep them at WARNING so no text leaks.
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _configured = True


def _omit_task_results_from_logs() -> None:
    # Celery logs every task's return value on success; results may quote message text (redacted content,
    # document titles), so the success line keeps the task name, id and runtime only.
    from celery.app import trace

    trace.LOG_SUCCESS = "Task %(name)s[%(id)s] succeeded in %(runtime)ss"


_omit_task_results_from_logs()
