"""Worker-side Prometheus metrics, wired once on Celery signals, and the exporter that serves them.

A prefork worker runs tasks in pool processes, so the counters live in prometheus_client's multiprocess
files: a `celery worker` process switches to them before it forks its pool (`celeryd_init`), in a directory of
its own under WORKER_METRICS_DIR. Two ways to scrape them:

- WORKER_METRICS_PORT set: the worker serves its own metrics on that port (one worker per port per host);
- `python -m workers exporter`: one process per host serves every worker's metrics under WORKER_METRICS_DIR,
  plus the queue depths (LLEN of each queue), which neither Celery nor Flower exports.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import signals
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

log = logging.getLogger("artisan.monitoring")

METRICS_DIR_ENV = "WORKER_METRICS_DIR"
METRICS_ADDR_ENV = "WORKER_METRICS_ADDR"
RUNTIME_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0, 1800.0)


def metrics_base_dir() -> Path:
    return Path(os.environ.get(METRICS_DIR_ENV) or Path(tempfile.gettempdir()) / "artisan-worker-metrics")


def _node_dir_name(nodename: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", nodename) or "worker"


@dataclass(frozen=True)
class WorkerMetrics:
    tasks: Counter
    runtime: Histogram
    retries: Counter
    dead_letters: Counter


_lock = threading.Lock()
_metrics: WorkerMetrics | None = None
# In-process registry for workers that never switched to multiprocess files (embedded test workers).
_registry = CollectorRegistry(auto_describe=True)
_own_dir: Path | None = None
_started: dict[str, float] = {}


def metrics() -> WorkerMetrics:
    """The worker's metric objects, created on first use (after the switch to multiprocess files)."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = WorkerMetrics(
                    tasks=Counter(
                        "artisan_worker_tasks",
                        "Task runs finished by a worker, by task name and outcome (succeeded, failed, retried)",
                        ["task", "outcome"],
                        registry=_registry,
                    ),
                    runtime=Histogram(
                        "artisan_worker_task_runtime_seconds",
                        "Wall time of each task run in the worker, by task name",
                        ["task"],
                        buckets=RUNTIME_BUCKETS,
                        registry=_registry,
                    ),
                    retries=Counter(
                        "artisan_worker_task_retries",
                        "Retries scheduled, by task name and the exception type that caused them",
                        ["task", "reason"],
                        registry=_registry,
                    ),
                    dead_letters=Counter(
                        "artisan_worker_dead_letters",
                        "Broker messages set aside as dead letters, by reason",
                        ["reason"],
                        registry=_registry,
                    ),
                )
    return _metrics


def count_dead_letter(reason: str) -> None:
    metrics().dead_letters.labels(reason=reason).inc()


# --- the signals ------------------------------------------------------------------------------------------
_OUTCOMES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}


@signals.task_prerun.connect
def _on_prerun(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _started[task_id] = time.perf_counter()


@signals.task_postrun.connect
def _on_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id, None) if task_id else None
    name = getattr(task, "name", None) or "unknown"
    m = metrics()
    m.tasks.labels(task=name, outcome=_OUTCOMES.get(state or "", (state or "unknown").lower())).inc()
    if started is not None:
        m.runtime.labels(task=name).observe(time.perf_counter() - started)


@signals.task_retry.connect
def _on_retry(sender: Any = None, reason: Any = None, **_: Any) -> None:
    # `reason` is the exception that caused the retry; Retry wraps it as `.exc` when raised through self.retry.
    cause = getattr(reason, "exc", None) or reason
    metrics().retries.labels(task=getattr(sender, "name", "unknown"), reason=type(cause).__name__).inc()


@signals.celeryd_init.connect
def _use_multiprocess_files(sender: str | None = None, **_: Any) -> None:
    """A `celery worker` process: count in per-process files (pool processes inherit this before the fork)."""
    global _own_dir
    if _metrics is not None and _own_dir is None:
        log.warning("event=metrics-multiprocess-skipped reason=metrics-created-before-worker-init")
        return
    directory = metrics_base_dir() / _node_dir_name(sender or "worker")
    # A restarted worker starts its counters from zero (Prometheus reads that as a counter reset).
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = values.MultiProcessValue()
    _own_dir = directory


@signals.worker_ready.connect
def _serve_own_metrics(**_: Any) -> None:
    from workers.settings import get_settings

    port = get_settings().worker_metrics_port
    if not port or _own_dir is None:
        return
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerFilesCollector([_own_dir]))
    address = os.environ.get(METRICS_ADDR_ENV, "127.0.0.1")
    try:
        start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        # A second worker on this host with the same port: it keeps working; the exporter still serves it.
        log.warning("event=metrics-port-unavailable port=%d error=%s", port, exc)
        return
    log.info("event=metrics-serving address=%s port=%d", address, port)


# --- reading the files --------------------------------------------------------------------------------------
class WorkerFilesCollector(Collector):
    """Merge the multiprocess files of the given worker directories (or every one under a base directory)."""

    def __init__(self, directories: Iterable[Path] | None = None, base: Path | None = None) -> None:
        self._directories = list(directories or [])
        self._base = base

    def _files(self) -> list[str]:
        dirs = list(self._directories)
        if self._base is not None and self._base.is_dir():
            dirs.extend(p for p in self._base.iterdir() if p.is_dir())
        return sorted(str(f) for d in dirs for f in d.glob("*.db"))

    def collect(self) -> Iterable[Metric]:
        return MultiProcessCollector.merge(self._files(), accumulate=True)


def exporter_registry(redis_url: str, base: Path | None = None) -> CollectorRegistry:
    """Every worker's task metrics on this host plus the queue depths."""
    from workers.metrics import QueueDepthCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerFilesCollector(base=base or metrics_base_dir()))
    registry.register(QueueDepthCollector(redis_url))
    return registry


def in_process_registry() -> CollectorRegistry:
    """The metrics of a worker embedded in this process (no multiprocess files)."""
    return _registry
