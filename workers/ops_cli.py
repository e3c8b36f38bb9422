"""Operator commands of `python -m workers`: failed jobs and replays, dead letters, queues, workers, backfills.

Each command registers itself on the CLI's parser through `workers.cli.EXTRA_COMMANDS`. Bad arguments end in
a one-line `error: …` on stderr and exit status 2 (argparse's own convention).
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from models.core import Job, JobStatus
from models.operations import BackfillRun, DeadLetter, DeadLetterReason
from workers.cli import EXTRA_COMMANDS, CommandError
from workers.contracts import load_task_args
from workers.db import session_scope
from workers.ledger import Publishable, publish, record_job
from workers.settings import get_settings

SubParsers = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return number


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be above 0")
    return number


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _job_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a job id (a UUID)") from None


def _one_line(value: str | None, limit: int = 160) -> str:
    flat = " ".join((value or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))


def _known_task(name: str) -> str:
    if name not in load_task_args():
        known = ", ".join(sorted(load_task_args()))
        raise CommandError(f"unknown task {name!r}; known tasks: {known}")
    return name


# --- failed-jobs ----------------------------------------------------------------------------------------------
def cmd_failed_jobs(args: argparse.Namespace) -> int:
    query = select(Job).where(Job.status == JobStatus.FAILED)
    if args.task:
        query = query.where(Job.task == _known_task(args.task))
    if args.workspace_id is not None:
        query = query.where(Job.workspace_id == args.workspace_id)
    query = query.order_by(Job.finished_at.desc().nulls_last(), Job.id).limit(args.limit)
    with session_scope() as session:
        jobs = session.execute(query).scalars().all()
        rows = [
            {
                "id": str(j.id),
                "task": j.task,
                "workspace_id": j.workspace_id,
                "attempts": j.attempts,
                "lost_runs": j.lost_runs,
                "finished_at": j.finished_at.isoformat() if j.finished_at else None,
                "error": j.error,
            }
            for j in jobs
        ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no failed jobs")
        return 0
    _print_table(
        ["id", "task", "workspace", "attempts", "finished_at", "error"],
        [[r["id"], r["task"], r["workspace_id"], r["attempts"], r["finished_at"], _one_line(r["error"])] for r in rows],
    )
    return 0


# --- replay ---------------------------------------------------------------------------------------------------
def replay_jobs(session: Session, job_ids: Sequence[uuid.UUID]) -> list[Publishable]:
    """Reset failed ledger rows to queued (a fresh attempt count) and claim them for publishing.

    Only rows still `failed` are reset, under a row lock, so two operators replaying at once publish each
    job once. The caller commits, then publishes (the outbox's rule).
    """
    if not job_ids:
        return []
    rows = session.execute(
        update(Job)
        .where(Job.id.in_(list(job_ids)), Job.status == JobStatus.FAILED)
        .values(
            status=JobStatus.QUEUED,
            attempts=0,
            lost_runs=0,
            error=None,
            result=None,
            started_at=None,
            finished_at=None,
            published_at=func.clock_timestamp(),
        )
        .returning(Job.id, Job.task, Job.args)
    ).all()
    return [Publishable(id=r.id, task=r.task, args=r.args) for r in rows]


def cmd_replay(args: argparse.Namespace) -> int:
    if (args.job_id is None) == (args.task is None):
        raise CommandError("give either one JOB_ID or --task NAME (to replay every failed job of that task)")
    with session_scope() as session:
        if args.job_id is not None:
            job = session.get(Job, args.job_id)
            if job is None:
                raise CommandError(f"no job {args.job_id}")
            if job.status != JobStatus.FAILED:
                raise CommandError(f"job {args.job_id} is {job.status.value}; only failed jobs can be replayed")
            ids = [job.id]
        else:
            query = select(Job.id).where(Job.status == JobStatus.FAILED, Job.task == _known_task(args.task))
            if args.workspace_id is not None:
                query = query.where(Job.workspace_id == args.workspace_id)
            ids = list(session.execute(query.order_by(Job.finished_at, Job.id).limit(args.limit)).scalars())
        if args.dry_run:
            for job_id in ids:
                print(f"would replay {job_id}")
            print(f"{len(ids)} failed job(s) would be replayed")
            return 0
        claimed = replay_jobs(session, ids)
    published = publish(claimed)
    for item in claimed:
        print(f"replayed {item.id} {item.task}")
    left = len(claimed) - published
    suffix = f" ({left} left to the sweeper: the broker did not take them)" if left else ""
    print(f"{len(claimed)} job(s) replayed{suffix}")
    return 0


# --- recover-orphans ---------------------------------------------------------------------------------------------
def cmd_recover_orphans(args: argparse.Namespace) -> int:
    from tasks.operations.recovery import recover_orphaned_runs

    with session_scope() as session:
        recovered = recover_orphaned_runs(session, min_age_seconds=args.min_age, limit=args.limit)
    publish(recovered)
    for item in recovered:
        print(f"handed back {item.id} {item.task}")
    print(f"{len(recovered)} orphaned run(s) handed back to the queue")
    return 0


# --- dead-letters ---------------------------------------------------------------------------------------------
def cmd_dead_letters(args: argparse.Namespace) -> int:
    query = select(DeadLetter)
    if args.reason:
        query = query.where(DeadLetter.reason == DeadLetterReason(args.reason))
    if args.task:
        query = query.where(DeadLetter.task == args.task)
    query = query.order_by(DeadLetter.received_at.desc(), DeadLetter.id.desc()).limit(args.limit)
    with session_scope() as session:
        rows = [
            {
                "id": d.id,
                "received_at": d.received_at.isoformat(),
                "reason": d.reason.value,
                "task": d.task,
                "task_id": d.task_id,
                "queue": d.queue,
                "worker": d.worker,
                "body_bytes": d.body_bytes,
                "body_sha256": d.body_sha256,
                "error": d.error,
            }
            for d in session.execute(query).scalars()
        ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no dead letters")
        return 0
    _print_table(
        ["id", "received_at", "reason", "task", "task_id", "queue", "bytes", "error"],
        [
            [
                r["id"],
                r["received_at"],
                r["reason"],
                r["task"],
                r["task_id"],
                r["queue"],
                r["body_bytes"],
                _one_line(r["error"], 100),
            ]
            for r in rows
        ],
    )
    return 0


# --- queues ---------------------------------------------------------------------------------------------------
def queue_depths(redis_url: str) -> dict[str, int]:
    import redis

    from workers.metrics import queue_depth
    from workers.queues import Queue

    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        return {q.value: queue_depth(client, q.value) for q in Queue}
    finally:
        client.close()


def cmd_queues(args: argparse.Namespace) -> int:
    import redis

    url = get_settings().redis_url
    try:
        depths = queue_depths(url)
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        # kombu's Redis transport keeps delivered-but-unacked messages in this hash until the ack.
        unacked = int(client.hlen("unacked"))
        client.close()
    except redis.RedisError as exc:
        raise CommandError(f"the broker is unreachable: {type(exc).__name__}: {exc}") from exc
    if args.json:
        print(json.dumps({"queues": depths, "unacked": unacked}, indent=2))
        return 0
    _print_table(["queue", "waiting"], [[name, depth] for name, depth in depths.items()])
    print(f"in flight (delivered, not yet acked): {unacked}")
    return 0


# --- workers --------------------------------------------------------------------------------------------------
@dataclass
class WorkerStatus:
    name: str
    queues: list[str]
    pool: str | None
    concurrency: int | None
    active: int
    processed: int
    pid: int | None


def worker_statuses(timeout: float) -> list[WorkerStatus]:
    from workers.app import app

    replies = app.control.ping(timeout=timeout) or []
    names = sorted({name for reply in replies for name in reply})
    if not names:
        return []
    # With a limit, each call returns as soon as every pinged worker answered instead of waiting out the timeout.
    inspect = app.control.inspect(destination=names, timeout=timeout, limit=len(names))
    stats = inspect.stats() or {}
    active = inspect.active() or {}
    queues = inspect.active_queues() or {}
    result = []
    for name in names:
        s = stats.get(name, {})
        pool = s.get("pool", {})
        result.append(
            WorkerStatus(
                name=name,
                queues=sorted(q["name"] for q in queues.get(name, [])),
                pool=(pool.get("implementation") or "").rsplit(":", 1)[-1] or None,
                concurrency=pool.get("max-concurrency"),
                active=len(active.get(name, [])),
                processed=sum((s.get("total") or {}).values()),
                pid=s.get("pid"),
            )
        )
    return result


def cmd_workers(args: argparse.Namespace) -> int:
    try:
        statuses = worker_statuses(args.timeout)
    except Exception as exc:  # kombu raises a handful of connection error types; all mean the same here
        raise CommandError(f"the broker is unreachable: {type(exc).__name__}: {exc}") from exc
    if args.json:
        print(json.dumps([s.__dict__ for s in statuses], indent=2))
    elif statuses:
        _print_table(
            ["worker", "pid", "pool", "concurrency", "queues", "active", "processed"],
            [[s.name, s.pid, s.pool, s.concurrency, ",".join(s.queues), s.active, s.processed] for s in statuses],
        )
    if not statuses:
        print(f"no worker answered within {args.timeout:g} s", file=sys.stderr)
        return 1
    return 0


# --- exporter -------------------------------------------------------------------------------------------------
def cmd_exporter(args: argparse.Namespace) -> int:
    from pathlib import Path

    from prometheus_client import start_http_server

    from workers.monitoring import exporter_registry, metrics_base_dir

    base = Path(args.metrics_dir) if args.metrics_dir else metrics_base_dir()
    registry = exporter_registry(get_settings().redis_url, base)
    try:
        start_http_server(args.port, addr=args.address, registry=registry)
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.address}:{args.port}: {exc}") from exc
    print(f"exporting worker metrics from {base} and queue depths on http://{args.address}:{args.port}/metrics")
    sys.stdout.flush()
    stop = {"now": False}

    def on_signal(signum: int, _frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop["now"]:
        time.sleep(0.5)
    return 0


# --- backfill -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Backfill:
    """One kind of backfill: which task, which units (ascending integer keys) and each unit's arguments."""

    kind: str
    task: str
    description: str
    # (session, start, end, after_key, limit) -> [(key, workspace_id, args)] in ascending key order
    units: Callable[[Session, datetime, datetime, int, int], list[tuple[int, int | None, dict[str, Any]]]]
    count: Callable[[Session, datetime, datetime], int]


def _table_exists(session: Session, table: str) -> bool:
    return bool(session.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": table}).scalar_one())


def _churn_units(session: Session, start: datetime, end: datetime, after: int, limit: int) -> list[Any]:
    rows = session.execute(
        text(
            """
            SELECT DISTINCT workspace_id FROM subscriptions
            WHERE started_at < :end AND (ended_at IS NULL OR ended_at >= :start) AND workspace_id > :after
              -- Churn is scored as of now: only workspaces that still have a live subscription can be.
              AND started_at <= now() AND (ended_at IS NULL OR ended_at > now())
            ORDER BY workspace_id LIMIT :limit
            """
        ),
        {"start": start, "end": end, "after": after, "limit": limit},
    ).scalars()
    return [(ws, ws, {"workspace_id": ws}) for ws in rows]


def _churn_count(session: Session, start: datetime, end: datetime) -> int:
    return int(
        session.execute(
            text(
                "SELECT count(DISTINCT workspace_id) FROM subscriptions "
                "WHERE started_at < :end AND (ended_at IS NULL OR ended_at >= :start) "
                "AND started_at <= now() AND (ended_at IS NULL OR ended_at > now())"
            ),
            {"start": start, "end": end},
        ).scalar_one()
    )


def _salesboard_units(session: Session, start: datetime, end: datetime, after: int, limit: int) -> list[Any]:
    if not _table_exists(session, "sales_activities"):
        return []
    rows = session.execute(
        text(
            """
            SELECT DISTINCT workspace_id FROM sales_activities
            WHERE occurred_at >= :start AND occurred_at < :end AND workspace_id > :after
            ORDER BY workspace_id LIMIT :limit
            """
        ),
        {"start": start, "end": end, "after": after, "limit": limit},
    ).scalars()
    return [(ws, ws, {"workspace_id": ws, "force": True}) for ws in rows]


def _salesboard_count(session: Session, start: datetime, end: datetime) -> int:
    if not _table_exists(session, "sales_activities"):
        return 0
    return int(
        session.execute(
            text(
                "SELECT count(DISTINCT workspace_id) FROM sales_activities "
                "WHERE occurred_at >= :start AND occurred_at < :end"
            ),
            {"start": start, "end": end},
        ).scalar_one()
    )


def _usage_runs(session: Session, start: datetime, end: datetime) -> int:
    # The roll-up is watermark-based (every event counted exactly once): re-aggregating a period means running it
    # enough times to cover the period's events; runs serialise on the watermark, so order does not matter.
    model = load_task_args()["billing.aggregate_usage"]
    per_run = model().model_dump()
    events_per_run = max(1, int(per_run.get("chunk_events", 1)) * int(per_run.get("max_chunks", 1)))
    events = int(
        session.execute(
            text("SELECT count(*) FROM usage_events WHERE occurred_at >= :start AND occurred_at < :end"),
            {"start": start, "end": end},
        ).scalar_one()
    )
    return max(1, math.ceil(events / events_per_run)) if events else 0


def _usage_units(session: Session, start: datetime, end: datetime, after: int, limit: int) -> list[Any]:
    runs = _usage_runs(session, start, end)
    return [(n, None, {}) for n in range(after + 1, min(runs, after + limit) + 1)]


BACKFILLS: dict[str, Backfill] = {
    "usage": Backfill(
        "usage",
        "billing.aggregate_usage",
        "re-aggregate the period's usage events into usage_metrics (billing.aggregate_usage runs)",
        _usage_units,
        _usage_runs,
    ),
    "churn": Backfill(
        "churn",
        "growth.score_churn_risk",
        "re-score churn risk of every workspace subscribed during the period (one job per workspace)",
        _churn_units,
        _churn_count,
    ),
    "salesboards": Backfill(
        "salesboards",
        "sales.sync_salesboard",
        "re-sync the salesboard of every workspace with sales activity in the period (forced refresh)",
        _salesboard_units,
        _salesboard_count,
    ),
}


def _checkpoint(session: Session, kind: str, start: date, end: date, restart: bool) -> BackfillRun:
    if restart:
        session.execute(
            BackfillRun.__table__.delete().where(
                BackfillRun.kind == kind, BackfillRun.period_start == start, BackfillRun.period_end == end
            )
        )
    session.execute(
        pg_insert(BackfillRun)
        .values(kind=kind, period_start=start, period_end=end)
        .on_conflict_do_nothing(index_elements=["kind", "period_start", "period_end"])
    )
    return session.execute(
        select(BackfillRun)
        .where(BackfillRun.kind == kind, BackfillRun.period_start == start, BackfillRun.period_end == end)
        .with_for_update()
    ).scalar_one()


def run_backfill(
    kind: str,
    start: date,
    end: date,
    *,
    batch_size: int,
    max_batches: int | None = None,
    restart: bool = False,
    progress: bool = True,
) -> BackfillRun:
    """Enqueue a backfill in batches; each batch's jobs and the checkpoint commit together, then publish.

    A re-run of the same kind and period resumes after the checkpoint. Every job carries an idempotency key
    made of the run and the unit, so even a batch enqueued twice would create each job once.
    """
    from tqdm import tqdm

    spec = BACKFILLS[kind]
    if spec.task not in load_task_args():
        raise CommandError(f"backfill {kind} needs task {spec.task}, which this deployment does not have")
    start_at = datetime(start.year, start.month, start.day, tzinfo=UTC)
    end_at = datetime(end.year, end.month, end.day, tzinfo=UTC)
    with session_scope() as session:
        run = _checkpoint(session, kind, start, end, restart)
        run_id, cursor, enqueued = run.id, run.cursor, run.enqueued
        if run.finished_at is not None:
            print(f"backfill {kind} {start}..{end} already finished ({run.enqueued} jobs); --restart to run it again")
            session.expunge(run)
            return run
        total = spec.count(session, start_at, end_at)
    bar = tqdm(total=max(total, enqueued), initial=enqueued, unit="job", desc=f"backfill {kind}", disable=not progress)
    batches = 0
    try:
        while max_batches is None or batches < max_batches:
            with session_scope() as session:
                run = session.execute(
                    select(BackfillRun).where(BackfillRun.id == run_id).with_for_update()
                ).scalar_one()
                units = spec.units(session, start_at, end_at, run.cursor, batch_size)
                if not units:
                    run.finished_at = datetime.now(UTC)
                    run.updated_at = run.finished_at
                    break
                items = []
                for key, workspace_id, job_args in units:
                    job, created = record_job(
                        session,
                        spec.task,
                        job_args,
                        workspace_id=workspace_id,
                        idempotency_key=f"backfill:{run_id}:{kind}:{key}",
                    )
                    if created:
                        items.append(Publishable(job.id, job.task, job.args))
                run.cursor = units[-1][0]
                run.enqueued += len(items)
                run.batches += 1
                run.updated_at = datetime.now(UTC)
                cursor, enqueued = run.cursor, run.enqueued
            publish(items)
            batches += 1
            bar.update(len(units))
    finally:
        bar.close()
    with session_scope() as session:
        final = session.get_one(BackfillRun, run_id)
        session.expunge(final)
    state = "finished" if final.finished_at else f"paused after {batches} batch(es); run again to resume"
    print(f"backfill {kind} {start}..{end}: {final.enqueued} job(s) enqueued, cursor {cursor}, {state}")
    return final


def cmd_backfill(args: argparse.Namespace) -> int:
    if args.end <= args.start:
        raise CommandError(f"--to ({args.end}) must be after --from ({args.start}); the period is [from, to)")
    run_backfill(
        args.kind,
        args.start,
        args.end,
        batch_size=args.batch_size,
        max_batches=args.max_batches,
        restart=args.restart,
        progress=not args.no_progress,
    )
    return 0


# --- registration ---------------------------------------------------------------------------------------------
def register(sub: Any) -> None:
    p = sub.add_parser("failed-jobs", help="list failed jobs, newest first, with their reason and attempts")
    p.add_argument("--task", help="only this task (contract name, e.g. billing.generate_invoice)")
    p.add_argument("--workspace-id", type=_positive_int, help="only this workspace's jobs")
    p.add_argument("--limit", type=_positive_int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_failed_jobs)

    p = sub.add_parser(
        "replay",
        help="run failed jobs again: one by id, or every failed job of a task",
        description="Reset failed ledger rows to queued (fresh attempt count) and publish them again. "
        "Only failed jobs are replayed; a job that succeeded or was cancelled is refused.",
    )
    p.add_argument("job_id", nargs="?", type=_job_id, help="the failed job's id")
    p.add_argument("--task", help="replay every failed job of this task instead of one job")
    p.add_argument("--workspace-id", type=_positive_int, help="with --task: only this workspace's jobs")
    p.add_argument("--limit", type=_positive_int, default=1000, help="with --task: at most this many (default 1000)")
    p.add_argument("--dry-run", action="store_true", help="list what would be replayed, change nothing")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "recover-orphans",
        help="hand back runs the ledger calls running that no worker holds (beat does this every minute)",
    )
    p.add_argument("--min-age", type=float, default=10.0, help="leave runs claimed less than this many seconds ago")
    p.add_argument("--limit", type=_positive_int, default=500, help="at most this many (default 500)")
    p.set_defaults(func=cmd_recover_orphans)

    p = sub.add_parser("dead-letters", help="list poison messages the workers set aside (newest first)")
    p.add_argument("--reason", choices=[r.value for r in DeadLetterReason], help="only this reason")
    p.add_argument("--task", help="only messages naming this task")
    p.add_argument("--limit", type=_positive_int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_dead_letters)

    p = sub.add_parser("queues", help="messages waiting in each queue, and in flight")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_queues)

    p = sub.add_parser("workers", help="the workers that answer a ping: queues, pool, active and processed tasks")
    p.add_argument("--timeout", type=_positive_float, default=2.0, help="seconds to wait for replies (default 2)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_workers)

    p = sub.add_parser(
        "exporter",
        help="serve every worker's task metrics on this host plus queue depths for Prometheus",
    )
    p.add_argument("--port", type=_positive_int, default=9808, help="port to listen on (default 9808)")
    p.add_argument("--address", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--metrics-dir", help="the workers' WORKER_METRICS_DIR (default: the same default they use)")
    p.set_defaults(func=cmd_exporter)

    kinds = "; ".join(f"{b.kind}: {b.description}" for b in BACKFILLS.values())
    p = sub.add_parser(
        "backfill",
        help="enqueue a backfill (usage, churn, salesboards) for a period in resumable batches",
        description=f"Kinds: {kinds}. The period is [from, to). Progress is checkpointed after every batch, "
        "so running the same command again resumes where it stopped.",
    )
    p.add_argument("kind", choices=sorted(BACKFILLS), help="what to backfill")
    p.add_argument("--from", dest="start", type=_iso_date, required=True, help="first day (YYYY-MM-DD)")
    p.add_argument("--to", dest="end", type=_iso_date, required=True, help="day after the last (YYYY-MM-DD)")
    p.add_argument("--batch-size", type=_positive_int, default=200, help="jobs per batch (default 200)")
    p.add_argument("--max-batches", type=_positive_int, help="stop after this many batches (resume later)")
    p.add_argument("--restart", action="store_true", help="forget the checkpoint and start from the beginning")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_backfill)


EXTRA_COMMANDS.append(register)
