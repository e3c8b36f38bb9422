"""Billing: ingest through the API against a bare COPY, aggregation against one raw INSERT ... SELECT ... GROUP BY,
and an invoice run over 10,000 subscriptions against bare Celery no-op tasks; each pair in the same run.

* ingest: BENCH_INGEST_EVENTS (200,000) events as batches of 10,000 POSTed to /v1/usage/events (uvicorn, 2
  workers, 2 client threads; bodies serialised before the clock starts) against a COPY of the same rows into the
  same table (same indexes), the table emptied between the two.
* aggregation: BENCH_EVENTS (1,000,000; BENCH_EVENTS=5000000 for the full figure) events loaded with COPY, then
  `aggregate_usage` from a zero watermark (chunks, watermark, upsert into usage_metrics, committed) against one
  `INSERT INTO <plain table> SELECT subscription_id, metric, current_period_start, sum(quantity) ... GROUP BY`
  over the same rows. BENCH_AGG_RUNS (3) alternating runs each; medians.
* invoices: BENCH_INVOICE_SUBSCRIPTIONS (10,000) subscriptions with an ended period, `billing.generate_invoices`
  fanning out `billing.generate_invoice` to two worker processes (prefork -c 1 each), until every subscription
  has its invoice; against the same number of bare Celery no-op tasks through two bare worker processes.

BENCH_BILLING_PARTS=ingest,aggregation,invoices (the default) picks the parts to run.
"""

from __future__ import annotations

import json
import os
import queue
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import redis
from sqlalchemy import insert, text

from api.keys import generate_key
from benchmarks.common import bench_environment, report
from models.core import ApiKey
from tasks.billing.aggregation import aggregate_usage
from tests.support.services import WorkerProcess, free_port, wait_until
from workers.db import get_engine, session_scope
from workers.ledger import Publishable, publish, record_job

INGEST_EVENTS = int(os.environ.get("BENCH_INGEST_EVENTS", "200000"))
EVENTS = int(os.environ.get("BENCH_EVENTS", "1000000"))
AGG_RUNS = int(os.environ.get("BENCH_AGG_RUNS", "3"))
INVOICE_SUBSCRIPTIONS = int(os.environ.get("BENCH_INVOICE_SUBSCRIPTIONS", "10000"))
SUBSCRIPTIONS = int(os.environ.get("BENCH_BILLING_SUBSCRIPTIONS", "1000"))
BATCH = 10_000
API_WORKERS = 2
CLIENTS = 2
METRICS = ("emails_sent", "leads_created", "campaigns_created", "api_calls", "ai_generations")
COLUMNS = "event_id, workspace_id, subscription_id, metric, quantity, occurred_at"


def _setup_subscriptions(count: int, started: datetime, plan: str = "enterprise") -> tuple[int, list[int]]:
    with session_scope() as s:
        workspace_id = s.execute(
            text("INSERT INTO workspaces (name) VALUES (:n) RETURNING id"), {"n": f"bench-{uuid.uuid4().hex[:8]}"}
        ).scalar_one()
        subs = list(
            s.execute(
                text(
                    """
                    INSERT INTO subscriptions (workspace_id, plan_code, status, started_at, billing_anchor_day,
                                               current_period_start, current_period_end)
                    SELECT :ws, CAST(:plan AS plan_tier), 'active', :started, p.anchor, p.start,
                           billing_period_end(p.start, p.anchor, 'UTC')
                    FROM generate_series(1, :n),
                         (SELECT extract(day from :started AT TIME ZONE 'UTC')::int AS anchor,
                                 billing_period_start(:started,
                                     extract(day from :started AT TIME ZONE 'UTC')::int, 'UTC') AS start) p
                    RETURNING id
                    """
                ),
                {"ws": workspace_id, "plan": plan, "started": started, "n": count},
            ).scalars()
        )
    return workspace_id, subs


def _rows(count: int, workspace_id: int, subs: list[int], since: datetime, seed: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    span = int((datetime.now(UTC) - since).total_seconds()) - 60
    tag = uuid.uuid4().hex[:8]
    return [
        (
            f"{tag}-{i}",
            workspace_id,
            rng.choice(subs),
            rng.choice(METRICS),
            rng.randint(1, 5),
            (since + timedelta(seconds=rng.randint(0, span))).isoformat(),
        )
        for i in range(count)
    ]


def _tsv(rows: list[tuple[Any, ...]]) -> bytes:
    return "".join("\t".join(str(v) for v in row) + "\n" for row in rows).encode()


def _copy(payload: bytes) -> float:
    """COPY pre-serialised rows into usage_events in one transaction; seconds including commit."""
    with get_engine().raw_connection() as raw:
        started = time.perf_counter()
        with raw.cursor() as cur, cur.copy(f"COPY usage_events ({COLUMNS}) FROM STDIN") as copy:
            view = memoryview(payload)
            for offset in range(0, len(view), 1 << 20):
                copy.write(view[offset : offset + (1 << 20)])
        raw.commit()
        return time.perf_counter() - started


def _truncate_events() -> None:
    with session_scope() as s:
        s.execute(text("TRUNCATE usage_events, usage_metrics"))
        s.execute(text("UPDATE usage_watermarks SET last_txid = 0, last_event_id = 0"))


def _start_api(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "API_MAX_BODY_BYTES": str(16 * 1024 * 1024), "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(API_WORKERS),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, 60, 0.2, "the API to answer")
    return proc


def _post_all(port: int, key: str, bodies: list[bytes]) -> tuple[float, int]:
    work: queue.Queue[bytes] = queue.Queue()
    for body in bodies:
        work.put(body)
    accepted = [0] * CLIENTS
    errors: list[str] = []

    def client(index: int) -> None:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as http:
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                response = http.post("/v1/usage/events", content=body)
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
                    return
                accepted[index] += response.json()["accepted"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"ingest failed: {errors[0]}")
    return seconds, sum(accepted)


def bench_ingest() -> dict[str, Any]:
    since = datetime.now(UTC) - timedelta(days=2)
    workspace_id, subs = _setup_subscriptions(SUBSCRIPTIONS, since)
    key = generate_key()
    with session_scope() as s:
        s.execute(insert(ApiKey).values(workspace_id=workspace_id, prefix=key.prefix, secret_hash=key.secret_hash))
    rows = _rows(INGEST_EVENTS, workspace_id, subs, since, seed=1)
    payload = _tsv(rows)
    bodies = [
        json.dumps(
            {
                "events": [
                    {"event_id": r[0], "subscription_id": r[2], "metric": r[3], "quantity": r[4], "occurred_at": r[5]}
                    for r in rows[i : i + BATCH]
                ]
            }
        ).encode()
        for i in range(0, len(rows), BATCH)
    ]
    _truncate_events()
    copy_seconds = _copy(payload)
    _truncate_events()
    port = free_port()
    api = _start_api(port)
    try:
        # Warm up each API worker's connections and imports with a batch of 100, then empty the table again.
        warm = [json.dumps({"events": json.loads(bodies[0])["events"][:100]}).encode() for _ in range(4)]
        _post_all(port, key.plaintext, warm)
        _truncate_events()
        api_seconds, accepted = _post_all(port, key.plaintext, bodies)
    finally:
        api.terminate()
        api.wait(30)
    if accepted != INGEST_EVENTS:
        raise RuntimeError(f"the API accepted {accepted} of {INGEST_EVENTS} events")
    return report(
        "billing-ingest",
        f"{INGEST_EVENTS:,} events, batches of {BATCH:,}, uvicorn --workers {API_WORKERS}, {CLIENTS} clients",
        ours=("POST /v1/usage/events", INGEST_EVENTS / api_seconds, "events/s"),
        bare=("COPY of the same rows into usage_events", INGEST_EVENTS / copy_seconds, "events/s"),
    )


BARE_AGGREGATE = text(
    """
    INSERT INTO bench_bare_usage (subscription_id, metric, period_start, quantity)
    SELECT e.subscription_id, e.metric, s.current_period_start, sum(e.quantity)
    FROM usage_events e JOIN subscriptions s ON s.id = e.subscription_id
    GROUP BY 1, 2, 3
    """
)


def _ours_aggregate() -> tuple[float, int]:
    with session_scope() as s:
        s.execute(text("TRUNCATE usage_metrics"))
        s.execute(text("UPDATE usage_watermarks SET last_txid = 0, last_event_id = 0"))
    started = time.perf_counter()
    events = 0
    while True:
        with session_scope() as s:
            done = aggregate_usage(s).events
        events += done
        if done == 0:
            break
    seconds = time.perf_counter() - started
    with session_scope() as s:
        total = s.execute(text("SELECT sum(quantity) FROM usage_metrics")).scalar_one()
    if events != EVENTS:
        raise RuntimeError(f"aggregated {events} of {EVENTS} events")
    return seconds, int(total)


def _bare_aggregate() -> tuple[float, int]:
    with session_scope() as s:
        s.execute(text("TRUNCATE bench_bare_usage"))
    started = time.perf_counter()
    with session_scope() as s:
        s.execute(BARE_AGGREGATE)
    seconds = time.perf_counter() - started
    with session_scope() as s:
        total = s.execute(text("SELECT sum(quantity) FROM bench_bare_usage")).scalar_one()
    return seconds, int(total)


def bench_aggregation() -> dict[str, Any]:
    since = datetime.now(UTC) - timedelta(days=2)
    workspace_id, subs = _setup_subscriptions(SUBSCRIPTIONS, since)
    _truncate_events()
    load_started = time.perf_counter()
    for offset in range(0, EVENTS, 1_000_000):
        count = min(1_000_000, EVENTS - offset)
        _copy(_tsv(_rows(count, workspace_id, subs, since, seed=offset + 2)))
    load_seconds = time.perf_counter() - load_started
    with session_scope() as s:
        s.execute(text("ANALYZE usage_events"))
        s.execute(
            text(
                "CREATE TABLE IF NOT EXISTS bench_bare_usage (subscription_id bigint, metric usage_metric, "
                "period_start timestamptz, quantity bigint)"
            )
        )
    ours_times: list[float] = []
    bare_times: list[float] = []
    for _ in range(AGG_RUNS):
        bare_seconds, bare_total = _bare_aggregate()
        ours_seconds, ours_total = _ours_aggregate()
        if ours_total != bare_total:
            raise RuntimeError(f"sums differ: ours {ours_total}, bare {bare_total}")
        bare_times.append(bare_seconds)
        ours_times.append(ours_seconds)
    print(f"  (loaded {EVENTS:,} events with COPY in {load_seconds:.1f} s)")
    return report(
        "billing-aggregation",
        f"{EVENTS:,} events over {SUBSCRIPTIONS:,} subscriptions x {len(METRICS)} metrics, median of {AGG_RUNS}",
        ours=("aggregate_usage from a zero watermark", statistics.median(ours_times), "s"),
        bare=("one INSERT ... SELECT ... GROUP BY", statistics.median(bare_times), "s"),
        higher_is_better=False,
    )


def _invoiced(subs: list[int]) -> int:
    with session_scope() as s:
        return int(
            s.execute(
                text("SELECT count(*) FROM invoices WHERE subscription_id = ANY(:ids)"), {"ids": subs}
            ).scalar_one()
        )


def bench_invoices() -> dict[str, Any]:
    _, subs = _setup_subscriptions(INVOICE_SUBSCRIPTIONS, datetime.now(UTC) - timedelta(days=35), plan="starter")
    workers = [WorkerProcess(queues=["billing"], concurrency=1, name=f"bench-billing-{i}") for i in range(2)]
    try:
        for worker in workers:
            worker.start()
        with session_scope() as s:
            job, _ = record_job(s, "billing.generate_invoices", {"chunk_size": 500})
            item = Publishable(job.id, job.task, job.args)
        started = time.perf_counter()
        publish([item])
        wait_until(lambda: _invoiced(subs) == len(subs), 1800, 0.25, "every invoice")
        ours_seconds = time.perf_counter() - started
    finally:
        for worker in workers:
            worker.stop()

    from benchmarks.bare_app import bare

    run = uuid.uuid4().hex
    counter = redis.Redis.from_url(os.environ["REDIS_URL"])
    bare_workers = [
        WorkerProcess(queues=["bare"], concurrency=1, name=f"bench-bare-{i}", app="benchmarks.bare_app:bare")
        for i in range(2)
    ]
    try:
        for worker in bare_workers:
            worker.start()
        started = time.perf_counter()
        for _ in range(len(subs)):
            bare.send_task("bare.noop", kwargs={"run": run}, queue="bare")
        wait_until(lambda: int(counter.get(f"bench:bare:{run}") or 0) >= len(subs), 1800, 0.05, "bare no-op tasks")
        bare_seconds = time.perf_counter() - started
    finally:
        for worker in bare_workers:
            worker.stop()
    return report(
        "billing-invoices",
        f"{len(subs):,} subscriptions, fan-out in chunks of 500, two worker processes (prefork -c 1 each)",
        ours=("generate_invoices -> generate_invoice", len(subs) / ours_seconds, "invoices/s"),
        bare=("bare Celery no-op tasks", len(subs) / bare_seconds, "tasks/s"),
    )


PARTS = {"ingest": bench_ingest, "aggregation": bench_aggregation, "invoices": bench_invoices}


def main() -> None:
    # BENCH_BILLING_PARTS=aggregation (comma-separated) runs a subset, e.g. for the 5,000,000-event figure.
    wanted = [p.strip() for p in os.environ.get("BENCH_BILLING_PARTS", ",".join(PARTS)).split(",") if p.strip()]
    unknown = sorted(set(wanted) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown BENCH_BILLING_PARTS {unknown}; choose from {sorted(PARTS)}")
    with bench_environment("billing"):
        for part in wanted:
            PARTS[part]()


if __name__ == "__main__":
    main()
    sys.exit(0)
