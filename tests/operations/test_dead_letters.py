"""Poison messages sent straight to the broker: the worker survives, the queue moves on, each one is recorded.

A real prefork worker subprocess (kept apart from the in-process worker fixture) receives, in one queue:
an undecodable body (with and without task headers), an unknown task name, a body that is not
[args, kwargs, options], kwargs that are not an object, positional arguments, a field of the wrong type and
a pickle (refused content type); then a good job, which must still succeed on the same worker.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from typing import Any

from sqlalchemy import select

from models.core import JobStatus
from models.operations import DeadLetter
from tests.support.jobs import enqueue, wait_for_job
from tests.support.services import WorkerProcess, wait_until
from workers.cli import main as cli
from workers.db import session_scope

POISON: dict[str, tuple[bytes | str, dict[str, Any], str]] = {
    # name: (body, headers, content type)
    "undecodable": (b"\x80{not json", {"task": "system.ping"}, "application/json"),
    "undecodable-no-headers": (b"\x80{not json", {}, "application/json"),
    "unknown-task": (json.dumps([[], {}, {}]), {"task": "billing.no_such_task"}, "application/json"),
    "not-a-triple": (json.dumps({"not": "a list"}), {"task": "system.ping"}, "application/json"),
    "kwargs-not-object": (json.dumps([[], [1], {}]), {"task": "system.ping"}, "application/json"),
    "positional": (json.dumps([[1, 2], {}, {}]), {"task": "system.ping"}, "application/json"),
    "wrong-type": (json.dumps([[], {"sleep_seconds": "soon"}, {}]), {"task": "system.ping"}, "application/json"),
    "pickle": (b"\x80\x04K\x01.", {"task": "system.ping"}, "application/x-python-serialize"),
}

EXPECTED_REASONS = {
    "undecodable": "undecodable",
    "undecodable-no-headers": "undecodable",
    "unknown-task": "unknown_task",
    "not-a-triple": "bad_arguments",
    "kwargs-not-object": "bad_arguments",
    "positional": "bad_arguments",
    "wrong-type": "bad_arguments",
    "pickle": "malformed",
}


def _publish_raw(ids: dict[str, str]) -> None:
    from workers.app import app

    with app.producer_or_acquire() as producer:
        for name, (body, headers, content_type) in POISON.items():
            task_id = str(uuid.uuid4())
            ids[name] = task_id
            full = {**headers, "id": task_id, "lang": "py"} if headers else {}
            producer.publish(
                body,
                exchange="artisan",
                routing_key="default",
                content_type=content_type,
                content_encoding="utf-8",
                headers=full,
                serializer=None,
            )


def test_poison_messages_are_recorded_and_neither_crash_the_worker_nor_block_the_queue(db_url: str, capsys) -> None:
    with session_scope() as session:
        before = session.execute(select(DeadLetter.id)).scalars().all()
    with WorkerProcess(queues=["default"], concurrency=1) as worker:
        pid = worker.proc.pid if worker.proc else None
        ids: dict[str, str] = {}
        _publish_raw(ids)
        good = enqueue("system.ping", {"message": "after the poison"})
        assert wait_for_job(good, timeout=60).status == JobStatus.SUCCEEDED
        # The same worker process, never restarted, took the good job after every poison message.
        assert worker.proc is not None and worker.proc.poll() is None and worker.proc.pid == pid
        log = worker.log_text()

    def recorded() -> list[DeadLetter]:
        with session_scope() as session:
            rows = session.execute(select(DeadLetter).where(DeadLetter.id.notin_(before or [0]))).scalars().all()
            for row in rows:
                session.expunge(row)
        # Only ours: the shared test broker may hand this worker a leftover message of another module.
        ours = [r for r in rows if r.task_id in ids.values() or (r.task_id is None and r.body_sha256 == headerless_sha)]
        return ours if len(ours) >= len(POISON) else []

    headerless_sha = hashlib.sha256(POISON["undecodable-no-headers"][0]).hexdigest()  # type: ignore[arg-type]
    rows = wait_until(recorded, 30, 0.2, "every poison message to be recorded")
    assert len(rows) == len(POISON)
    by_task_id = {row.task_id: row for row in rows if row.task_id}
    headerless = [row for row in rows if row.task_id is None]
    assert len(headerless) == 1 and headerless[0].reason.value == "undecodable"
    for name, expected in EXPECTED_REASONS.items():
        if name == "undecodable-no-headers":
            continue
        row = by_task_id[ids[name]]
        assert row.reason.value == expected, name
        assert row.worker == worker.hostname
        assert row.queue == "default"
        assert len(row.body_sha256) == 64 and row.body_bytes > 0
        assert "argsrepr" not in row.headers and "kwargsrepr" not in row.headers
    assert Counter(r.reason.value for r in rows) == Counter(EXPECTED_REASONS.values())
    assert "soon" not in log and "not json" not in log, "message bodies must not reach the logs"

    # Runnable-but-wrong messages also fail their ledger row once, with the reason, and are not retried.
    for name, field in (("positional", "keyword arguments only"), ("wrong-type", "sleep_seconds")):
        job = wait_for_job(ids[name], timeout=30)
        assert job.status == JobStatus.FAILED and field in (job.error or "") and job.attempts == 0

    assert cli(["dead-letters", "--json", "--limit", "100"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {d["task_id"] for d in listed} >= {ids[n] for n in POISON if n != "undecodable-no-headers"}
    assert cli(["dead-letters", "--reason", "unknown_task"]) == 0
    table = capsys.readouterr().out
    assert "billing.no_such_task" in table and "system.ping" not in table
