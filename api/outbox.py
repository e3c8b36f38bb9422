"""The API's outbox relay: committed ledger rows published to Redis in pipelined batches from one thread.

A request commits its ledger row and hands the row to the relay; it never waits for the broker. The relay
drains what accumulated, encodes each job as the exact Celery protocol-2 message `send_task` would write
(plus its `task-sent` event for Flower), and pushes the whole batch in one Redis round trip. Per message that
costs a fraction of `send_task`, which builds kombu entities, runs signals and does several round trips each.

The outbox guarantees hold: a row reaches the relay only after its transaction committed; if the broker is
down the relay keeps the rows and retries with backoff; if the process dies with rows in memory they are still
queued in the ledger and `system.redeliver_stale` publishes them after its grace period. A row published twice
(relay retry racing the sweeper) runs once: the worker's claim skips a job that is running or finished.
"""

from __future__ import annotations

import base64
import collections
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from celery.events.event import Event
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from kombu.utils.json import dumps

from workers.ledger import Publishable
from workers.metrics import OUTBOX_FAILURES, OUTBOX_PENDING, OUTBOX_PUBLISHED

log = logging.getLogger("artisan.api")

MAX_BATCH = 500
# Rows kept in memory while the broker is down; older ones are dropped (they stay queued in the ledger and
# the sweeper publishes them), so a long outage cannot exhaust the API's memory.
MAX_PENDING = 100_000
BACKOFF_START_SECONDS = 0.2
BACKOFF_CAP_SECONDS = 5.0
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@dataclass(frozen=True)
class _Route:
    queue: str
    headers: dict[str, Any]


class MessageEncoder:
    """Celery protocol-2 task messages and `task-sent` events in kombu's Redis envelope.

    The per-task parts (queue from the app's router, the header set) come from Celery itself, once per task
    name; a test compares the output with what `send_task` writes.
    """

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.hostname = anon_nodename()
        self.pid = os.getpid()
        self.send_events = bool(app.conf.task_send_sent_event)
        self._routes: dict[str, _Route] = {}
        self._kwargsrepr_max = int(app.conf.get("task_kwargsrepr_maxsize", 1024) or 1024)

    def _route(self, task: str) -> _Route:
        route = self._routes.get(task)
        if route is None:
            options = self.app.amqp.router.route({}, task, (), {}, None)
            queue = options.get("queue") or self.app.amqp.default_queue
            # Arguments as send_task passes them by default (it leaves ignore_result unset: None).
            template = self.app.amqp.as_task_v2(
                "00000000-0000-0000-0000-000000000000", task, args=(), kwargs={}, ignore_result=None
            )
            headers = dict(template.headers)
            headers["origin"] = self.hostname
            route = _Route(queue=queue if isinstance(queue, str) else queue.name, headers=headers)
            self._routes[task] = route
        return route

    def _kwargsrepr(self, kwargs: dict[str, Any]) -> str:
        text = repr(kwargs)
        return text if len(text) <= self._kwargsrepr_max else saferepr(kwargs, self._kwargsrepr_max)

    def task_message(self, job: Publishable) -> tuple[str, bytes, str]:
        """(queue, LPUSH payload, kwargsrepr) of one job; the Celery task id is the ledger id."""
        route = self._route(job.task)
        task_id = str(job.id)
        kwargsrepr = self._kwargsrepr(job.args)
        headers = dict(route.headers)
        headers["id"] = task_id
        headers["root_id"] = task_id
        headers["kwargsrepr"] = kwargsrepr
        body = base64.b64encode(dumps([[], job.args, _EMBED]).encode()).decode()
        message = {
            "body": body,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                "correlation_id": task_id,
                "reply_to": self.app.thread_oid,
                "delivery_mode": 2,
                # Celery turns a direct-exchange route into kombu's anonymous exchange: the queue is the key.
                "delivery_info": {"exchange": "", "routing_key": route.queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return route.queue, dumps(message).encode(), kwargsrepr

    def sent_event(self, job: Publishable, queue: str, kwargsrepr: str) -> bytes:
        task_id = str(job.id)
        event = Event(
            "task-sent",
            hostname=self.hostname,
            utcoffset=_utcoffset(),
            pid=self.pid,
            clock=self.app.clock.forward(),
            uuid=task_id,
            root_id=task_id,
            parent_id=None,
            name=job.task,
            args="()",
            kwargs=kwargsrepr,
            retries=0,
            eta=None,
            expires=None,
            queue=queue,
            exchange="",
            routing_key=queue,
        )
        envelope = {
            "body": base64.b64encode(dumps(event).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"hostname": self.hostname},
            "properties": {
                "delivery_mode": 1,
                "delivery_info": {"exchange": "celeryev", "routing_key": "task.sent"},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return dumps(envelope).encode()


def _utcoffset() -> int:
    from celery.utils.time import utcoffset

    return utcoffset()


class BrokerLayout:
    """Where kombu puts things on this broker: the fanout topics of task-sent events, read from a live channel."""

    def __init__(self, app: Celery) -> None:
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            if getattr(channel, "global_keyprefix", ""):
                raise RuntimeError("the outbox relay does not support broker global_keyprefix")
            self.event_topics: list[str] = list(channel._get_publish_topics("celeryev", "task.sent"))


def publish_pipelined(
    client: redis.Redis, encoder: MessageEncoder, layout: BrokerLayout, jobs: Iterable[Publishable]
) -> int:
    """Push every job (and its sent event) in one non-transactional pipeline: one round trip for the batch."""
    pipe = client.pipeline(transaction=False)
    count = 0
    for job in jobs:
        queue, payload, kwargsrepr = encoder.task_message(job)
        pipe.lpush(queue, payload)
        if encoder.send_events:
            event = encoder.sent_event(job, queue, kwargsrepr)
            for topic in layout.event_topics:
                pipe.publish(topic, event)
        count += 1
    if count:
        pipe.execute()
    return count


class OutboxRelay:
    """One background thread per process that publishes committed ledger rows in batches."""

    def __init__(self, app: Celery | None = None) -> None:
        self._app = app
        self._cond = threading.Condition()
        self._pending: collections.deque[Publishable] = collections.deque()
        self._in_flight = 0
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._stopping = False

    # --- the request side ------------------------------------------------------------------------------
    def submit(self, jobs: Iterable[Publishable]) -> None:
        """Queue committed rows for publishing; never blocks on the broker."""
        with self._cond:
            self._ensure_thread()
            self._pending.extend(jobs)
            overflow = len(self._pending) - MAX_PENDING
            if overflow > 0:
                for _ in range(overflow):
                    self._pending.popleft()
                log.warning("outbox relay over %d rows: %d left to the sweeper", MAX_PENDING, overflow)
            OUTBOX_PENDING.set(len(self._pending))
            self._cond.notify()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is published (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Publish what is pending (up to `timeout`), then end the thread; the ledger keeps anything left."""
        self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            self._thread = None
            self._stopping = False

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending) + self._in_flight

    # --- the thread ------------------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        pid = os.getpid()
        if self._thread is not None and self._pid == pid and self._thread.is_alive():
            return
        # A forked child does not inherit the parent's thread: start its own (rows in memory are the parent's).
        if self._pid != pid:
            self._pending.clear()
            self._in_flight = 0
        self._pid = pid
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._thread.start()

    def _take(self) -> list[Publishable] | None:
        with self._cond:
            while not self._pending:
                if self._stopping:
                    return None
                self._cond.wait(1.0)
            batch = [self._pending.popleft() for _ in range(min(MAX_BATCH, len(self._pending)))]
            self._in_flight = len(batch)
            OUTBOX_PENDING.set(len(self._pending))
            return batch

    def _done(self, batch: list[Publishable], ok: bool) -> None:
        with self._cond:
            if not ok:
                # Put the batch back in front, in order: it goes out first once the broker answers.
                self._pending.extendleft(reversed(batch))
            self._in_flight = 0
            OUTBOX_PENDING.set(len(self._pending))
            self._cond.notify_all()

    def _run(self) -> None:
        from workers.app import app as default_app

        app = self._app or default_app
        client = redis.Redis.from_url(app.conf.broker_url, socket_timeout=5, socket_connect_timeout=2)
        encoder = MessageEncoder(app)
        layout: BrokerLayout | None = None
        backoff = BACKOFF_START_SECONDS
        failing_since: float | None = None
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                if layout is None:
                    layout = BrokerLayout(app)
                publish_pipelined(client, encoder, layout, batch)
            except Exception as exc:  # any broker error: keep the rows and try again; the ledger has them anyway
                self._done(batch, ok=False)
                OUTBOX_FAILURES.inc()
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning("outbox relay cannot reach the broker, retrying: %s", type(exc).__name__)
                with self._cond:
                    if self._stopping:
                        return
                    self._cond.wait(backoff)
                backoff = min(BACKOFF_CAP_SECONDS, backoff * 2)
                continue
            if failing_since is not None:
                log.info("outbox relay reached the broker again after %.1f s", time.monotonic() - failing_since)
                failing_since = None
            backoff = BACKOFF_START_SECONDS
            OUTBOX_PUBLISHED.inc(len(batch))
            self._done(batch, ok=True)


relay = OutboxRelay()
