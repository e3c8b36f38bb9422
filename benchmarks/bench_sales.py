"""AI Salesboard sync for a large team against bare SQL computing the same per-rep per-day figures, same run.

Data: BENCH_SALES_REPS reps (1,000) x BENCH_SALES_DAYS days (90) of activity loaded with COPY (about 19 events
per rep per day: calls, emails, opens, replies, meetings and deal events; ~1.7 M rows by default), workspace in
America/New_York.

* ours, full rebuild: `sync_salesboard` from scratch (no rollup, no board, no sync state): the rollup of 126 days,
  every (rep, day) board row of 90 days, offline coaching for today's rows, committed.
* ours, steady state: the 5-minute beat's sync (forced, as the beat sends it) after 5 minutes of activity
  (an 8-hour working day's rate, ~200 events) arrived; the sync before it ran 5 minutes earlier.
* ours, a day's batch: the same sync after a whole day of activity (~19,000 events) arrived at once.
* bare: one `INSERT INTO <plain table> SELECT ...` from raw activity computing the same figures as ours
  (day counts, won value, open pipeline replayed from every deal's history, 30-day funnel sums, 7-day / prior
  7-day / prior 30-day trend sums, pipeline 7 and 30 days ago, the five components, their team mid-rank
  percentiles and medians, the weighted score, strengths and opportunities) with ROWS windows over a dense
  rep-by-day grid: no rollup, JSON, upsert, sync state or coaching. Full: all 90 days. Steady state: today's
  rows only, which still needs 37 days of raw activity and every deal's history.
  After the runs the bench checks that ours and bare agree on every figure of today's rows.

Each figure is the median of BENCH_SALES_RUNS (3) runs after a warm-up; ours and bare alternate.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import insert, text

from benchmarks.common import bench_environment, report
from models.core import TeamMember, Workspace
from tasks.sales.salesboard import BACKFILL_DAYS, HISTORY_DAYS, sync_salesboard
from workers.db import get_engine, session_scope

REPS = int(os.environ.get("BENCH_SALES_REPS", "1000"))
DAYS = int(os.environ.get("BENCH_SALES_DAYS", "90"))
RUNS = int(os.environ.get("BENCH_SALES_RUNS", "3"))
SEED = 20_261_206
NOW = datetime.now(UTC).replace(microsecond=0)
TIMEZONE = "America/New_York"
# The steady state's batch: 5 minutes of an 8-hour working day's activity.
BATCH_SECONDS = 300
BATCH_SHARE = 5 / (8 * 60)

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
BOARD_STATE = ("ai_salesboard_metrics", "sales_rep_days", "salesboard_rollups", "salesboard_syncs")

_COUNTS = ("calls", "emails_sent", "emails_opened", "emails_replied", "meetings_booked", "meetings_held")
_TRENDED = ("calls", "emails_sent", "emails_replied", "meetings_booked", "meetings_held")
# The figures both sides write, compared column by column after the runs.
COMPARED = (
    *_COUNTS,
    "deals_won",
    "deals_lost",
    "pipeline_value_cents",
    "won_value_cents",
    *(f"{c}_30d" for c in (*_COUNTS[1:], "deals_won", "deals_lost")),
    "won_value_30d_cents",
    *(f"{c}_{w}" for c in _TRENDED for w in ("7d", "prior_7d", "prior_30d")),
    "won_value_7d_cents",
    "won_value_prior_7d_cents",
    "won_value_prior_30d_cents",
    "pipeline_7d_ago_cents",
    "pipeline_30d_ago_cents",
    "performance_score",
    "team_size",
    "strengths",
    "opportunities",
)

BARE_TABLE = (
    "CREATE TABLE bare_board (rep_id bigint, metric_date date, "
    + ", ".join(
        f"{c} {'text[]' if c in ('strengths', 'opportunities') else 'float8' if c == 'performance_score' else 'bigint'}"
        for c in COMPARED
    )
    + ", activity_percentile float8, reply_rate_percentile float8, meetings_percentile float8, "
    "pipeline_percentile float8, wins_percentile float8, team_median_activity float8, "
    "team_median_reply_rate float8, team_median_meetings float8, team_median_pipeline float8, "
    "team_median_wins float8)"
)


def _pct(value: str) -> str:
    # Mid-rank percentile within the day, a team of one at 0.5 (the documented definition, written out here).
    return (
        f"coalesce(((rank() OVER (PARTITION BY metric_date ORDER BY {value}) - 1) "
        f"+ (count(*) OVER (PARTITION BY metric_date, {value}) - 1) / 2.0::float8) "
        f"/ nullif(count(*) OVER (PARTITION BY metric_date) - 1, 0), 0.5)"
    )


_COMPONENTS = {
    "activity": "(calls_7d + emails_sent_7d)::float8",
    "reply_rate": "CASE WHEN emails_sent_30d > 0 THEN emails_replied_30d::float8 / emails_sent_30d ELSE 0 END",
    "meetings": "(meetings_booked_7d + meetings_held_7d)::float8",
    "pipeline": "pipeline_value_cents::float8",
    "wins": "won_value_30d_cents::float8",
}
_FRAMES = {"7d": "last_7d", "prior_7d": "prior_7d", "prior_30d": "prior_30d"}
_WEIGHTS = {"activity": 0.20, "reply_rate": 0.15, "meetings": 0.25, "pipeline": 0.20, "wins": 0.20}

BARE_SQL = text(
    f"""
INSERT INTO bare_board
WITH
daily AS (
    SELECT rep_id, (occurred_at AT TIME ZONE :tz)::date AS metric_date,
           count(*) FILTER (WHERE activity_type = 'call') AS calls,
           count(*) FILTER (WHERE activity_type = 'email_sent') AS emails_sent,
           count(*) FILTER (WHERE activity_type = 'email_opened') AS emails_opened,
           count(*) FILTER (WHERE activity_type = 'email_replied') AS emails_replied,
           count(*) FILTER (WHERE activity_type = 'meeting_booked') AS meetings_booked,
           count(*) FILTER (WHERE activity_type = 'meeting_held') AS meetings_held,
           count(*) FILTER (WHERE activity_type = 'deal_won') AS deals_won,
           count(*) FILTER (WHERE activity_type = 'deal_lost') AS deals_lost,
           count(*) AS events
    FROM sales_activities
    WHERE workspace_id = :workspace_id AND occurred_at >= (CAST(:grid_start AS timestamp) AT TIME ZONE :tz)
    GROUP BY 1, 2
),
deals AS (
    SELECT rep_id, (occurred_at AT TIME ZONE :tz)::date AS metric_date, activity_type, amount_cents,
           CASE WHEN activity_type = 'deal_stage_changed' THEN amount_cents ELSE 0 END AS open_value,
           lag(rep_id) OVER deal AS prev_rep,
           lag(CASE WHEN activity_type = 'deal_stage_changed' THEN amount_cents ELSE 0 END) OVER deal AS prev_open
    FROM sales_activities
    WHERE workspace_id = :workspace_id AND activity_type IN ('deal_stage_changed', 'deal_won', 'deal_lost')
    WINDOW deal AS (PARTITION BY lead_id ORDER BY occurred_at, id)
),
pipeline AS (
    SELECT rep_id, greatest(metric_date, CAST(:grid_start AS date)) AS metric_date, sum(delta) AS delta
    FROM (
        SELECT rep_id, metric_date, open_value AS delta FROM deals
        UNION ALL
        SELECT prev_rep, metric_date, -prev_open FROM deals WHERE prev_rep IS NOT NULL
    ) AS deltas
    GROUP BY 1, 2
),
won AS (
    SELECT rep_id, metric_date, sum(coalesce(amount_cents, prev_open, 0)) AS won_value
    FROM deals WHERE activity_type = 'deal_won' AND metric_date >= CAST(:grid_start AS date)
    GROUP BY 1, 2
),
grid AS (
    SELECT r.rep_id, g.day::date AS metric_date,
           {", ".join(f"coalesce(d.{c}, 0) AS {c}" for c in (*_COUNTS, "deals_won", "deals_lost", "events"))},
           coalesce(w.won_value, 0) AS won_value,
           sum(coalesce(p.delta, 0)) OVER (PARTITION BY r.rep_id ORDER BY g.day) AS pipeline_value
    FROM (SELECT rep_id FROM daily UNION SELECT rep_id FROM pipeline) AS r
    CROSS JOIN generate_series(CAST(:grid_start AS date), CAST(:to_day AS date), interval '1 day') AS g(day)
    LEFT JOIN daily d ON d.rep_id = r.rep_id AND d.metric_date = g.day::date
    LEFT JOIN pipeline p ON p.rep_id = r.rep_id AND p.metric_date = g.day::date
    LEFT JOIN won w ON w.rep_id = r.rep_id AND w.metric_date = g.day::date
),
windowed AS (
    SELECT rep_id, metric_date,
           {", ".join(_COUNTS)}, deals_won, deals_lost, pipeline_value AS pipeline_value_cents,
           won_value AS won_value_cents,
           {", ".join(f"sum({c}) OVER last_30d AS {c}_30d" for c in (*_COUNTS[1:], "deals_won", "deals_lost"))},
           sum(won_value) OVER last_30d AS won_value_30d_cents, sum(events) OVER last_30d AS events_30d,
           {", ".join(f"coalesce(sum({c}) OVER {f}, 0) AS {c}_{w}" for c in _TRENDED for w, f in _FRAMES.items())},
           sum(won_value) OVER last_7d AS won_value_7d_cents,
           coalesce(sum(won_value) OVER prior_7d, 0) AS won_value_prior_7d_cents,
           coalesce(sum(won_value) OVER prior_30d, 0) AS won_value_prior_30d_cents,
           coalesce(lag(pipeline_value, 7) OVER by_day, 0) AS pipeline_7d_ago_cents,
           coalesce(lag(pipeline_value, 30) OVER by_day, 0) AS pipeline_30d_ago_cents
    FROM grid
    WINDOW by_day AS (PARTITION BY rep_id ORDER BY metric_date),
           last_7d AS (by_day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW),
           prior_7d AS (by_day ROWS BETWEEN 13 PRECEDING AND 7 PRECEDING),
           prior_30d AS (by_day ROWS BETWEEN 36 PRECEDING AND 7 PRECEDING),
           last_30d AS (by_day ROWS BETWEEN 29 PRECEDING AND CURRENT ROW)
),
components AS (
    SELECT windowed.*, {", ".join(f"{expr} AS c_{name}" for name, expr in _COMPONENTS.items())}
    FROM windowed
    WHERE metric_date >= CAST(:from_day AS date) AND (events_30d > 0 OR pipeline_value_cents <> 0)
),
ranked AS (
    SELECT components.*, count(*) OVER (PARTITION BY metric_date) AS team_size,
           {", ".join(f"{_pct(f'c_{name}')} AS {name}_percentile" for name in _COMPONENTS)}
    FROM components
),
medians AS (
    SELECT metric_date,
           {", ".join(f"percentile_cont(0.5) WITHIN GROUP (ORDER BY c_{n}) AS team_median_{n}" for n in _COMPONENTS)}
    FROM components GROUP BY metric_date
)
SELECT r.rep_id, r.metric_date,
       {", ".join(f"r.{c}" for c in COMPARED[: COMPARED.index("performance_score")])},
       round((100 * ({" + ".join(f"{w} * r.{n}_percentile" for n, w in _WEIGHTS.items())}))::numeric, 1)::float8,
       r.team_size,
       array_remove(ARRAY[{", ".join(f"CASE WHEN r.{n}_percentile >= 0.75 THEN '{n}' END" for n in _WEIGHTS)}], NULL),
       array_remove(ARRAY[{", ".join(f"CASE WHEN r.{n}_percentile <= 0.25 THEN '{n}' END" for n in _WEIGHTS)}], NULL),
       {", ".join(f"r.{n}_percentile" for n in _COMPONENTS)},
       {", ".join(f"m.team_median_{n}" for n in _COMPONENTS)}
FROM ranked r JOIN medians m ON m.metric_date = r.metric_date
"""
)

_OURS_ROWS = (
    f"SELECT rep_id, metric_date, {', '.join(COMPARED)} FROM ai_salesboard_metrics "
    "WHERE workspace_id = :workspace_id AND metric_date >= CAST(:since AS date)"
)
_BARE_ROWS = f"SELECT rep_id, metric_date, {', '.join(COMPARED)} FROM bare_board"
# (rep, day) rows present on one side only or with any figure different.
DISAGREEMENTS = text(
    f"SELECT count(*) FROM (({_OURS_ROWS} EXCEPT {_BARE_ROWS}) UNION ALL ({_BARE_ROWS} EXCEPT {_OURS_ROWS})) AS d"
)


def _setup() -> tuple[int, list[int]]:
    with session_scope() as session:
        workspace_id = session.execute(
            insert(Workspace).values(name="bench-sales", timezone=TIMEZONE).returning(Workspace.id)
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
    workspace_id: int,
    reps: list[int],
    end: datetime,
    span_seconds: int,
    days_of_activity: float,
    tag: str,
    rng: np.random.Generator,
    ingested_at: datetime,
) -> int:
    """`days_of_activity` days' worth of activity at uniform times in [end - span, end), loaded with one COPY."""
    start = end - timedelta(seconds=span_seconds)
    rep_ids = np.asarray(reps)
    buffer = io.StringIO()
    rows = 0
    ingested = ingested_at.isoformat()
    for kind, mean in DAILY_MEANS.items():
        counts = rng.poisson(mean * days_of_activity, size=len(reps))
        total = int(counts.sum())
        rep_index = np.repeat(np.arange(len(reps)), counts)
        offsets = rng.integers(0, span_seconds, size=total)
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
    return rows


def _reset_board() -> None:
    with get_engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(BOARD_STATE)}"))


def _today(now: datetime) -> date:
    with get_engine().connect() as conn:
        local_day = text("SELECT (CAST(:at AS timestamptz) AT TIME ZONE :tz)::date")
        return conn.execute(local_day, {"at": now, "tz": TIMEZONE}).scalar_one()


def _ours(workspace_id: int, now: datetime, force: bool = True) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    with session_scope() as session:
        result = sync_salesboard(session, workspace_id, force=force, now=now)
    return time.perf_counter() - started, result


def _ours_full(workspace_id: int) -> tuple[float, int]:
    _reset_board()
    seconds, result = _ours(workspace_id, NOW)
    return seconds, int(result["rows_written"])


def _bare(workspace_id: int, now: datetime, days: int) -> tuple[float, int]:
    """The bare statement for the last `days` local days up to `now`."""
    to_day = _today(now)
    from_day = to_day - timedelta(days=days - 1)
    with get_engine().begin() as conn:
        conn.execute(text("TRUNCATE bare_board"))
    started = time.perf_counter()
    with get_engine().begin() as conn:
        # The same planner settings ours runs with (JIT off, 64 MB work_mem): only the SQL differs.
        conn.execute(text("SET LOCAL jit = off"))
        conn.execute(text("SET LOCAL work_mem = '64MB'"))
        written = conn.execute(
            BARE_SQL,
            {
                "workspace_id": workspace_id,
                "tz": TIMEZONE,
                "from_day": from_day,
                "to_day": to_day,
                "grid_start": from_day - timedelta(days=HISTORY_DAYS),
            },
        ).rowcount
    return time.perf_counter() - started, written


def _disagreements(workspace_id: int, since: date) -> int:
    """Rows on which ours and the last bare run differ, from `since` (the bare run's first day) on."""
    with get_engine().connect() as conn:
        return conn.execute(DISAGREEMENTS, {"workspace_id": workspace_id, "since": since}).scalar_one()


def _median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    with bench_environment("sales"):
        with get_engine().begin() as conn:
            conn.execute(text(BARE_TABLE))
        rng = np.random.default_rng(SEED)
        workspace_id, reps = _setup()
        started = time.perf_counter()
        rows = _copy_activity(
            workspace_id, reps, NOW, DAYS * 86_400, DAYS, "base", rng, ingested_at=NOW - timedelta(hours=1)
        )
        with get_engine().begin() as conn:
            conn.execute(text("ANALYZE sales_activities"))
        print(f"[sales] generated and COPYed {rows:,} activities in {time.perf_counter() - started:.1f} s")

        _bare(workspace_id, NOW, BACKFILL_DAYS)
        _ours_full(workspace_id)
        full: list[float] = []
        bare_full: list[float] = []
        for _ in range(RUNS):
            seconds, ours_rows = _ours_full(workspace_id)
            full.append(seconds)
            seconds, bare_rows = _bare(workspace_id, NOW, BACKFILL_DAYS)
            bare_full.append(seconds)
        print(f"[sales] full: ours wrote {ours_rows:,} board rows, bare {bare_rows:,}")
        print(f"[sales] full runs: ours {[round(t, 2) for t in full]}  bare {[round(t, 2) for t in bare_full]}")
        full_disagreements = _disagreements(workspace_id, _today(NOW) - timedelta(days=BACKFILL_DAYS - 1))
        print(f"[sales] rows of the 90 days on which ours and bare disagree: {full_disagreements}")

        # The steady state: every 5 minutes the beat's sync after 5 minutes of fresh activity.
        steady: list[float] = []
        bare_today: list[float] = []
        sync_at = NOW
        for run in range(RUNS + 1):
            sync_at += timedelta(minutes=5)
            batch = _copy_activity(
                workspace_id, reps, sync_at, BATCH_SECONDS, BATCH_SHARE, f"s{run}", rng, sync_at - timedelta(minutes=1)
            )
            seconds, result = _ours(workspace_id, sync_at)
            bare_seconds, _ = _bare(workspace_id, sync_at, 1)
            if run:  # the first is the warm-up
                steady.append(seconds)
                bare_today.append(bare_seconds)
        print(
            f"[sales] steady state: {batch} new activities per 5 minutes, rolled up from {result['rolled_up_from']}, "
            f"board from {result['from_day']}: {result['rows_written']:,} rows changed, {result['coached']} coached"
        )
        print(f"[sales] steady runs: ours {[round(t, 3) for t in steady]}  bare {[round(t, 3) for t in bare_today]}")
        disagreements = full_disagreements + _disagreements(workspace_id, _today(sync_at))
        print(f"[sales] today's rows on which ours and bare disagree: {disagreements - full_disagreements}")

        # A whole day of activity arriving at once (a backlogged integration).
        day_batch: list[float] = []
        for run in range(RUNS):
            sync_at += timedelta(minutes=5)
            _copy_activity(workspace_id, reps, sync_at, 86_400, 1, f"d{run}", rng, sync_at - timedelta(minutes=1))
            seconds, result = _ours(workspace_id, sync_at)
            day_batch.append(seconds)
        print(
            f"[sales] a day's batch: median {_median(day_batch):.2f} s {[round(t, 2) for t in day_batch]} "
            f"(rolled up from {result['rolled_up_from']}, {result['rows_written']:,} rows changed)"
        )
        if disagreements:
            raise SystemExit(f"ours and bare disagree on {disagreements} rows: the baseline is not the same work")
    report(
        "sales",
        f"{REPS} reps x {DAYS} days, {rows:,} activities; full salesboard rebuild vs bare SQL (median of {RUNS})",
        ours=("sync_salesboard full rebuild (seconds)", _median(full), "s"),
        bare=("bare INSERT ... SELECT of the same figures, 90 days", _median(bare_full), "s"),
        higher_is_better=False,
    )
    report(
        "sales",
        f"steady state: the 5-minute sync after {batch} new activities (median of {RUNS})",
        ours=("sync_salesboard incremental (milliseconds)", 1000 * _median(steady), "ms"),
        bare=("bare INSERT ... SELECT of today's figures from raw activity", 1000 * _median(bare_today), "ms"),
        higher_is_better=False,
    )


if __name__ == "__main__":
    main()
    sys.exit(0)
