"""AI Salesboard sync for a large team against the bare SQL aggregation of the same activity, in the same run.

Data: BENCH_SALES_REPS reps (1,000) x BENCH_SALES_DAYS days (90) of activity loaded with COPY (about 19 events
per rep per day: calls, emails, opens, replies, meetings and deal events; ~1.7 M rows by default).

* ours: `sync_salesboard` from scratch (no stored metrics, no sync state): one INSERT ... SELECT over the dense
  rep-by-day grid writing every (rep, day) row (counts, open pipeline replayed from deal history, trailing
  windows, funnel, conversion rates, team-relative score, insights) plus offline coaching for today's rows,
  committed. Also reported: the 5-minute incremental sync after a fresh batch of today's activity.
* bare: the per-rep per-day counts alone, `INSERT INTO <temp table> SELECT ... GROUP BY rep, local day`, over the
  same rows (no pipeline, windows, ranking, JSON, upsert or coaching).

Each side runs BENCH_SALES_RUNS times (3) after a warm-up, alternating; medians are reported.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import delete, insert, text

from benchmarks.common import bench_environment, report
from models.core import TeamMember, Workspace
from models.sales import AISalesboardMetric, SalesboardSync
from tasks.sales.salesboard import BACKFILL_DAYS, sync_salesboard
from workers.db import get_engine, session_scope

REPS = int(os.environ.get("BENCH_SALES_REPS", "1000"))
DAYS = int(os.environ.get("BENCH_SALES_DAYS", "90"))
RUNS = int(os.environ.get("BENCH_SALES_RUNS", "3"))
SEED = 20_261_206
NOW = datetime.now(UTC).replace(microsecond=0)

# Mean events per rep per day, by type (a busy outbound SDR team).
DAILY_MEANS = {
    "call": 5.0,
    "email_sent": 8.0,
    "email_opened": 3.5,
    "email_replied": 0.8,
    "meeting_booked": 0.4,
    "meeting_held": 0.3,
    "deal_stage_changed": 0.5,
    "deal_won": 0.06,
    "deal_lost": 0.06,
}
STAGES = ("prospecting", "qualified", "demo", "proposal", "negotiation")

BARE_SQL = text(
    """
    INSERT INTO bare_daily_counts
    SELECT rep_id, (occurred_at AT TIME ZONE :tz)::date AS day,
           count(*) FILTER (WHERE activity_type = 'call'),
           count(*) FILTER (WHERE activity_type = 'email_sent'),
           count(*) FILTER (WHERE activity_type = 'email_opened'),
           count(*) FILTER (WHERE activity_type = 'email_replied'),
           count(*) FILTER (WHERE activity_type = 'meeting_booked'),
           count(*) FILTER (WHERE activity_type = 'meeting_held'),
           count(*) FILTER (WHERE activity_type = 'deal_won'),
           count(*) FILTER (WHERE activity_type = 'deal_lost'),
           coalesce(sum(amount_cents) FILTER (WHERE activity_type = 'deal_stage_changed'), 0)
    FROM sales_activities
    WHERE workspace_id = :workspace_id AND occurred_at >= :since AND occurred_at < :until
    GROUP BY 1, 2
    """
)


def _setup() -> tuple[int, list[int]]:
    with session_scope() as session:
        workspace_id = session.execute(
            insert(Workspace).values(name="bench-sales", timezone="America/New_York").returning(Workspace.id)
        ).scalar_one()
        reps = list(
            session.scalars(
                insert(TeamMember)
                .values(
                    [{"workspace_id": workspace_id, "email": f"rep{i}@bench", "name": f"Rep {i}"} for i in range(REPS)]
                )
                .returning(TeamMember.id)
            )
        )
    return workspace_id, reps


def _copy_activity(
    workspace_id: int, reps: list[int], days: int, tag: str, rng: np.random.Generator, ingested_at: datetime
) -> int:
    """Generate the activity with numpy and load it with one COPY; returns the number of rows."""
    start = NOW - timedelta(days=days)
    rep_ids = np.asarray(reps)
    buffer = io.StringIO()
    rows = 0
    day_seconds = 86_400
    for kind, mean in DAILY_MEANS.items():
        counts = rng.poisson(mean, size=(len(reps), days))
        total = int(counts.sum())
        rep_index = np.repeat(np.arange(len(reps)), counts.sum(axis=1))
        day_index = np.concatenate([np.repeat(np.arange(days), row) for row in counts])
        offsets = day_index * day_seconds + rng.integers(0, day_seconds, size=total)
        # Never after NOW: the last generated day may be partial.
        offsets = np.minimum(offsets, days * day_seconds - 1)
        pool = 50 if kind.startswith("deal") else 400
        prefix = "d" if kind.startswith("deal") else "l"
        # Vectorised columns, then one join per row: per-row numpy scalar access would dominate the load time.
        stamps = (np.datetime64(start.replace(tzinfo=None), "s") + offsets.astype("timedelta64[s]")).astype(str)
        rep_column = rep_ids[rep_index].tolist()
        leads = rng.integers(0, pool, size=total).tolist()
        if kind.startswith("email"):
            templates = [f"t{t}" for t in rng.integers(0, 6, size=total).tolist()]
        else:
            templates = ["\\N"] * total
        if kind == "deal_stage_changed":
            stages = [STAGES[i] for i in rng.integers(0, len(STAGES), size=total).tolist()]
            amounts = [str(a * 100_000) for a in rng.integers(5, 500, size=total).tolist()]
        else:
            stages = amounts = ["\\N"] * total
        ingested = ingested_at.isoformat()
        buffer.writelines(
            f"{workspace_id}\t{tag}-{kind}-{i}\t{kind}\t{rep}\t{at}+00\t{prefix}{rep}-{lead}\t\\N\t\\N\t\\N\t\\N\t"
            f"{template}\t{stage}\t{amount}\t{ingested}\n"
            for i, (rep, at, lead, template, stage, amount) in enumerate(
                zip(rep_column, stamps.tolist(), leads, templates, stages, amounts, strict=True)
            )
        )
        rows += total
    raw = get_engine().raw_connection()
    try:
        with raw.cursor() as cursor:
            copy_sql = (
                "COPY sales_activities (workspace_id, activity_id, activity_type, rep_id, occurred_at, lead_id, "
                "lead_industry, lead_company_size, lead_title_seniority, lead_region, template_id, deal_stage, "
                "amount_cents, ingested_at) FROM STDIN"
            )
            with cursor.copy(copy_sql) as copy:
                copy.write(buffer.getvalue())
        raw.commit()
    finally:
        raw.close()
    with get_engine().begin() as conn:
        conn.execute(text("ANALYZE sales_activities"))
    return rows


def _reset_board(workspace_id: int) -> None:
    with session_scope() as session:
        session.execute(delete(AISalesboardMetric).where(AISalesboardMetric.workspace_id == workspace_id))
        session.execute(delete(SalesboardSync).where(SalesboardSync.workspace_id == workspace_id))


def _ours_full(workspace_id: int) -> tuple[float, int]:
    _reset_board(workspace_id)
    started = time.perf_counter()
    with session_scope() as session:
        result = sync_salesboard(session, workspace_id, force=True, now=NOW)
    return time.perf_counter() - started, int(result["rows_written"])


def _bare(workspace_id: int) -> tuple[float, int]:
    with get_engine().begin() as conn:
        conn.execute(text("TRUNCATE bare_daily_counts"))
    started = time.perf_counter()
    with get_engine().begin() as conn:
        written = conn.execute(
            BARE_SQL,
            {
                "workspace_id": workspace_id,
                "tz": "America/New_York",
                "since": NOW - timedelta(days=BACKFILL_DAYS + 1),
                "until": NOW + timedelta(seconds=1),
            },
        ).rowcount
    return time.perf_counter() - started, written


def main() -> None:
    with bench_environment("sales"):
        with get_engine().begin() as conn:
            conn.execute(
                text(
                    "CREATE TABLE bare_daily_counts (rep_id bigint, day date, calls int, emails_sent int, "
                    "emails_opened int, emails_replied int, meetings_booked int, meetings_held int, deals_won int, "
                    "deals_lost int, stage_amount_cents bigint)"
                )
            )
        rng = np.random.default_rng(SEED)
        workspace_id, reps = _setup()
        started = time.perf_counter()
        rows = _copy_activity(workspace_id, reps, DAYS, "base", rng, ingested_at=NOW - timedelta(hours=1))
        print(f"[sales] generated and COPYed {rows:,} activities in {time.perf_counter() - started:.1f} s")

        _bare(workspace_id)
        _ours_full(workspace_id)
        ours_times: list[float] = []
        bare_times: list[float] = []
        for _ in range(RUNS):
            seconds, ours_rows = _ours_full(workspace_id)
            ours_times.append(seconds)
            seconds, bare_rows = _bare(workspace_id)
            bare_times.append(seconds)
        print(f"[sales] ours wrote {ours_rows:,} metric rows per sync; bare wrote {bare_rows:,} count rows")
        print(f"[sales] ours runs: {[round(t, 2) for t in ours_times]}  bare runs: {[round(t, 2) for t in bare_times]}")

        # The steady state: the 5-minute beat after a batch of today's activity (only today is recomputed).
        incremental: list[float] = []
        for run in range(RUNS):
            sync_at = NOW + timedelta(minutes=5 * (run + 1))
            _copy_activity(workspace_id, reps, 1, f"inc{run}", rng, ingested_at=sync_at - timedelta(minutes=1))
            started = time.perf_counter()
            with session_scope() as session:
                result = sync_salesboard(session, workspace_id, now=sync_at)
            incremental.append(time.perf_counter() - started)
        print(
            f"[sales] incremental sync after a day's batch: median {statistics.median(incremental):.2f} s "
            f"(from_day {result['from_day']}, {result['rows_written']:,} rows)"
        )
    report(
        "sales",
        f"{REPS} reps x {DAYS} days, {rows:,} activities; full salesboard sync vs bare GROUP BY (median of {RUNS})",
        ours=("sync_salesboard full rebuild (seconds)", statistics.median(ours_times), "s"),
        bare=("bare INSERT ... SELECT ... GROUP BY rep, day", statistics.median(bare_times), "s"),
        higher_is_better=False,
    )


if __name__ == "__main__":
    main()
    sys.exit(0)
