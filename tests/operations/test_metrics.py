"""Worker-side Prometheus metrics: counted in the pool processes on Celery signals, served by the worker itself
(WORKER_METRICS_PORT) and by the per-host exporter (`python -m workers exporter`) together with the queue depths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from models.core import JobStatus
from tests.support.env import ROOT
from tests.support.jobs import enqueue, wait_for_job
from tests.support.services import WorkerProcess, free_port, wait_until


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_workers_count_tasks_runtime_and_dead_letters_and_the_exporter_adds_queue_depths(db_url: str) -> None:
    from workers.app import app

    metrics_dir = tempfile.mkdtemp(prefix="artisan-metrics-")
    port = free_port()
    env = {"WORKER_METRICS_PORT": str(port), "WORKER_METRICS_DIR": metrics_dir}
    with WorkerProcess(queues=["default"], concurrency=2, env=env) as worker:
        ids = [enqueue("system.ping", {"message": f"m{i}"}) for i in range(5)]
        for job_id in ids:
            assert wait_for_job(job_id, timeout=60).status == JobStatus.SUCCEEDED
        # One poison message: counted by the worker's main process (its consumer), not a pool process.
        with app.producer_or_acquire() as producer:
            producer.publish(
                json.dumps([[], {}, {}]),
                exchange="artisan",
                routing_key="default",
                content_type="application/json",
                content_encoding="utf-8",
                headers={"task": "system.no_such_task", "id": str(uuid.uuid4()), "lang": "py"},
                serializer=None,
            )
        own = f"http://127.0.0.1:{port}/metrics"

        def counted() -> dict | None:
            samples = _scrape(own)
            done = _value(samples, "artisan_worker_tasks_total", task="system.ping", outcome="succeeded") >= 5
            dead = _value(samples, "artisan_worker_dead_letters_total", reason="unknown_task") >= 1
            return samples if done and dead else None

        samples = wait_until(counted, 30, 0.3, "the worker's metrics")
        # At least our five (the shared test broker may hold a leftover ping from another module); every run timed.
        succeeded = _value(samples, "artisan_worker_tasks_total", task="system.ping", outcome="succeeded")
        assert succeeded >= 5
        assert _value(samples, "artisan_worker_task_runtime_seconds_count", task="system.ping") == succeeded
        assert _value(samples, "artisan_worker_task_runtime_seconds_sum", task="system.ping") > 0
        assert _value(samples, "artisan_worker_dead_letters_total", reason="unknown_task") == 1
        assert os.listdir(os.path.join(metrics_dir, worker.hostname.replace("@", "_")))

        # Three messages nobody consumes (no analytics worker here): the exporter reports them waiting.
        for _ in range(3):
            enqueue("growth.detect_expansion", {})
        exporter_port = free_port()
        exporter = subprocess.Popen(
            [sys.executable, "-m", "workers", "exporter", "--port", str(exporter_port), "--metrics-dir", metrics_dir],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{exporter_port}/metrics"

            def up() -> dict | None:
                try:
                    return _scrape(url)
                except httpx.HTTPError:
                    return None

            merged = wait_until(up, 60, 0.3, "the exporter")
        finally:
            exporter.terminate()
            exporter.wait(timeout=15)
    assert exporter.returncode == 0
    assert _value(merged, "artisan_worker_tasks_total", task="system.ping", outcome="succeeded") == succeeded
    assert _value(merged, "artisan_worker_dead_letters_total", reason="unknown_task") == 1
    assert _value(merged, "artisan_queue_depth", queue="analytics") >= 3
    assert ("artisan_queue_depth", (("queue", "billing"),)) in merged
