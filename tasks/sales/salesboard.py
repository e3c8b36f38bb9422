"""AI Salesboard sync: one set-based statement writes every rep's daily metrics; coaching follows for today.

Per sync (see README, "Sales"):
1. The 5-minute cache: a sync of the same scope (the team, or a rep the team sync also covers) within
   5 minutes of the last returns the stored metrics unless `force`.
2. The dirty range: from the earliest local day of activity ingested since the scope's last sync (minus a
   margin for transactions that committed late) to today; the first sync backfills up to BACKFILL_DAYS.
   Everything after a late activity's day is recomputed, because open pipeline, trailing windows and
   trends all carry forward.
3. One `WITH … INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE` over a dense rep-by-day grid computes
   counts, open pipeline, funnel, conversion rates, the team-relative score and the insights for every
   (rep, day) of the range at once.
4. Coaching for today's rows whose inputs changed (tasks.sales.coaching): the LLM layer if configured,
   else offline rules; historical rows keep the coaching they had when they were today.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.core import TeamMember, Workspace
from models.sales import ActivityType, AISalesboardMetric, SalesActivity, SalesboardSync
from tasks.sales import coaching
from tasks.sales.scoring import (
    COMPONENT_SQL,
    OPPORTUNITY_PERCENTILE,
    SCORE_WEIGHTS,
    STRENGTH_PERCENTILE,
    percentile_sql,
    score_sql,
)
from workers.errors import BadInput

CACHE_TTL = timedelta(minutes=5)
# How far back a first sync (or a very late activity) reaches: the board shows a quarter.
BACKFILL_DAYS = 90
# An ingest transaction can commit after a sync that started later read its snapshot; re-reading activity
# ingested this long before the last sync catches it (recomputing a day twice is harmless).
LATE_COMMIT_MARGIN = timedelta(minutes=10)
# History before the first output day that the windows need: trends compare the last 7 days with the 30 before.
HISTORY_DAYS = 36
TEAM_SCOPE = 0

# Daily flows summed over trailing windows (ROWS frames: the grid has exactly one row per rep and day).
_FLOWS = (
    "calls",
    "emails_sent",
    "emails_opened",
    "emails_replied",
    "meetings_booked",
    "meetings_held",
    "deals_won",
    "deals_lost",
    "won_value",
    "events",
)
_TREND_METRICS = ("calls", "emails_sent", "emails_replied", "meetings_booked", "meetings_held", "won_value")
# Metric column -> the activity type it counts.
_COUNTED_TYPES: dict[str, ActivityType] = {
    "calls": ActivityType.CALL,
    "emails_sent": ActivityType.EMAIL_SENT,
    "emails_opened": ActivityType.EMAIL_OPENED,
    "emails_replied": ActivityType.EMAIL_REPLIED,
    "meetings_booked": ActivityType.MEETING_BOOKED,
    "meetings_held": ActivityType.MEETING_HELD,
    "deals_won": ActivityType.DEAL_WON,
    "deals_lost": ActivityType.DEAL_LOST,
}
_COUNT_COLUMNS = tuple(_COUNTED_TYPES)
_FUNNEL = ("emails_sent", "emails_opened", "emails_replied", "meetings_booked", "meetings_held", "deals_won")
_CONVERSIONS = (
    ("sent_to_opened", "emails_opened", "emails_sent"),
    ("opened_to_replied", "emails_replied", "emails_opened"),
    ("replied_to_meeting_booked", "meetings_booked", "emails_replied"),
    ("booked_to_held", "meetings_held", "meetings_booked"),
    ("held_to_won", "deals_won", "meetings_held"),
)


def _rate(numerator: str, denominator: str) -> str:
    # float8 division, one numeric conversion for the rounding: numeric arithmetic on 90k rows costs seconds.
    return f"CASE WHEN ({denominator}) > 0 THEN round((({numerator})::float8 / ({denominator}))::numeric, 4) END"


def _change(current: str, prior: str) -> str:
    return f"CASE WHEN ({prior}) > 0 THEN round(((({current}) - ({prior}))::float8 / ({prior}))::numeric, 3) END"


def _window_sums() -> str:
    frames = {"7d": "w7", "p7": "p7", "p30": "p30", "30d": "w30"}
    return ",\n        ".join(
        f"(sum({flow}) OVER {window})::bigint AS {flow}_{suffix}"
        for flow in _FLOWS
        for suffix, window in frames.items()
    )


def _trends() -> str:
    parts = []
    for metric in _TREND_METRICS:
        weekly_prior_30 = f"({metric}_p30 * 7 / 30.0::float8)"
        parts.append(
            f"'{metric}', jsonb_build_object("
            f"'last_7d', {metric}_7d, 'prior_7d', {metric}_p7, "
            f"'change_vs_prior_7d', {_change(f'{metric}_7d', f'{metric}_p7')}, "
            f"'prior_30d_weekly_avg', round({weekly_prior_30}::numeric, 2), "
            f"'change_vs_prior_30d', {_change(f'{metric}_7d', weekly_prior_30)})"
        )
    parts.append(
        "'pipeline_value_cents', jsonb_build_object("
        "'now', pipeline_value, '7d_ago', pipeline_7d_ago, '30d_ago', pipeline_30d_ago, "
        f"'change_vs_7d_ago', {_change('pipeline_value', 'pipeline_7d_ago')}, "
        f"'change_vs_30d_ago', {_change('pipeline_value', 'pipeline_30d_ago')})"
    )
    return "jsonb_build_object(" + ", ".join(parts) + ")"


def _labelled_percentiles(predicate: str, order: str) -> str:
    values = ", ".join(f"('{name}', pct_{name})" for name in SCORE_WEIGHTS)
    return (
        f"(SELECT coalesce(jsonb_agg(c.name ORDER BY c.pct {order}, c.name), '[]'::jsonb) "
        f"FROM (VALUES {values}) AS c(name, pct) WHERE c.pct {predicate})"
    )


def _build_sync_sql() -> str:
    components = ",\n        ".join(f"{expr} AS c_{name}" for name, expr in COMPONENT_SQL.items())
    percentiles = ",\n        ".join(f"{percentile_sql(f'c_{name}')} AS pct_{name}" for name in SCORE_WEIGHTS)
    medians = ",\n        ".join(
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY c_{name}) AS med_{name}" for name in SCORE_WEIGHTS
    )
    score_components = ", ".join(
        f"'{name}', jsonb_build_object('value', round(r.c_{name}::numeric, 4), "
        f"'percentile', round(r.pct_{name}::numeric, 3), 'team_median', round(m.med_{name}::numeric, 4), "
        f"'weight', {weight!r})"
        for name, weight in SCORE_WEIGHTS.items()
    )
    conversions = (
        ", ".join(f"'{name}', {_rate(f'{num}_30d', f'{den}_30d')}" for name, num, den in _CONVERSIONS)
        + f", 'win_rate', {_rate('deals_won_30d', 'deals_won_30d + deals_lost_30d')}"
    )
    funnel = ", ".join(f"jsonb_build_object('stage', '{s}', 'count', {s}_30d)" for s in _FUNNEL)
    counts = ", ".join(f"coalesce(d.{c}, 0) AS {c}" for c in _COUNT_COLUMNS)
    count_filters = ",\n            ".join(
        f"count(*) FILTER (WHERE a.activity_type = '{kind.value}')::int AS {column}"
        for column, kind in _COUNTED_TYPES.items()
    )
    update_columns = (
        *_COUNT_COLUMNS,
        "pipeline_value_cents",
        "won_value_cents",
        "conversion_rates",
        "funnel",
        "performance_score",
        "score_components",
        "insights",
        "synced_at",
    )
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in update_columns)
    return f"""
WITH
daily AS (
    SELECT a.rep_id, (a.occurred_at AT TIME ZONE :tz)::date AS day,
            {count_filters},
            count(*)::int AS events
    FROM sales_activities a
    WHERE a.workspace_id = :workspace_id AND a.occurred_at >= :grid_start_at AND a.occurred_at < :grid_end_at
    GROUP BY a.rep_id, day
),
deal_values AS (
    -- Each deal (lead) event's open value: its amount while in a stage, 0 once won or lost.
    SELECT a.rep_id, (a.occurred_at AT TIME ZONE :tz)::date AS day, a.activity_type, a.amount_cents,
           CASE WHEN a.activity_type = 'deal_stage_changed' THEN a.amount_cents ELSE 0 END AS open_value,
           lag(a.rep_id) OVER deal AS prev_rep,
           lag(CASE WHEN a.activity_type = 'deal_stage_changed' THEN a.amount_cents ELSE 0 END) OVER deal
               AS prev_open_value
    FROM sales_activities a
    WHERE a.workspace_id = :workspace_id AND a.occurred_at < :grid_end_at
      AND a.activity_type IN ('deal_stage_changed', 'deal_won', 'deal_lost')
    WINDOW deal AS (PARTITION BY a.lead_id ORDER BY a.occurred_at, a.id)
),
pipeline_daily AS (
    -- Changes of open pipeline per rep and day; everything before the grid folds into its first day.
    SELECT rep_id, greatest(day, CAST(:grid_start AS date)) AS day, sum(delta) AS delta
    FROM (
        SELECT rep_id, day, open_value AS delta FROM deal_values
        UNION ALL
        SELECT prev_rep, day, -prev_open_value FROM deal_values WHERE prev_rep IS NOT NULL
    ) AS deltas
    GROUP BY 1, 2
),
won_daily AS (
    SELECT rep_id, day, sum(coalesce(amount_cents, prev_open_value, 0)) AS won_value
    FROM deal_values
    WHERE activity_type = 'deal_won' AND day >= CAST(:grid_start AS date)
    GROUP BY rep_id, day
),
reps AS (
    SELECT rep_id FROM daily UNION SELECT rep_id FROM pipeline_daily
),
dense AS (
    SELECT g.rep_id, g.day, {counts},
           coalesce(d.events, 0) AS events,
           coalesce(w.won_value, 0)::bigint AS won_value,
           (sum(coalesce(p.delta, 0)) OVER (PARTITION BY g.rep_id ORDER BY g.day))::bigint AS pipeline_value
    FROM (
        SELECT r.rep_id, s.day::date AS day
        FROM reps r
        CROSS JOIN generate_series(CAST(:grid_start AS date), CAST(:to_day AS date), interval '1 day') AS s(day)
    ) AS g
    LEFT JOIN daily d ON d.rep_id = g.rep_id AND d.day = g.day
    LEFT JOIN pipeline_daily p ON p.rep_id = g.rep_id AND p.day = g.day
    LEFT JOIN won_daily w ON w.rep_id = g.rep_id AND w.day = g.day
),
windowed AS (
    SELECT dense.*,
        {_window_sums()},
        lag(pipeline_value, 7) OVER by_day AS pipeline_7d_ago,
        lag(pipeline_value, 30) OVER by_day AS pipeline_30d_ago
    FROM dense
    WINDOW by_day AS (PARTITION BY rep_id ORDER BY day),
           w7 AS (by_day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW),
           p7 AS (by_day ROWS BETWEEN 13 PRECEDING AND 7 PRECEDING),
           p30 AS (by_day ROWS BETWEEN 36 PRECEDING AND 7 PRECEDING),
           w30 AS (by_day ROWS BETWEEN 29 PRECEDING AND CURRENT ROW)
),
components AS (
    -- A rep is on the board for a day if they did anything in the 30 days up to it or hold open pipeline.
    SELECT windowed.*,
        {components}
    FROM windowed
    WHERE day >= CAST(:from_day AS date) AND (events_30d > 0 OR pipeline_value <> 0)
),
ranked AS (
    SELECT components.*,
        count(*) OVER (PARTITION BY day) AS team_size,
        {percentiles}
    FROM components
),
medians AS (
    SELECT day,
        {medians}
    FROM components
    GROUP BY day
)
INSERT INTO ai_salesboard_metrics (
    workspace_id, rep_id, metric_date, {", ".join(_COUNT_COLUMNS)}, pipeline_value_cents, won_value_cents,
    conversion_rates, funnel, performance_score, score_components, insights, synced_at
)
SELECT :workspace_id, r.rep_id, r.day, {", ".join(f"r.{c}" for c in _COUNT_COLUMNS)},
       r.pipeline_value, r.won_value,
       jsonb_build_object({conversions}),
       jsonb_build_array({funnel}),
       {score_sql()},
       jsonb_build_object({score_components}),
       jsonb_build_object(
           'strengths', {_labelled_percentiles(f">= {STRENGTH_PERCENTILE}", "DESC")},
           'opportunities', {_labelled_percentiles(f"<= {OPPORTUNITY_PERCENTILE}", "ASC")},
           'trends', {_trends()},
           'team_size', r.team_size
       ),
       :synced_at
FROM ranked r
JOIN medians m ON m.day = r.day
WHERE CAST(:rep_id AS bigint) IS NULL OR r.rep_id = CAST(:rep_id AS bigint)
ON CONFLICT (workspace_id, rep_id, metric_date) DO UPDATE SET {updates}
"""


SYNC_SQL = text(_build_sync_sql())


@dataclass(frozen=True)
class SyncWindow:
    from_day: date
    to_day: date
    grid_start: date
    grid_start_at: datetime
    grid_end_at: datetime


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)


def sync_window(from_day: date, to_day: date, tz: ZoneInfo) -> SyncWindow:
    grid_start = from_day - timedelta(days=HISTORY_DAYS)
    return SyncWindow(
        from_day=from_day,
        to_day=to_day,
        grid_start=grid_start,
        grid_start_at=_local_midnight(grid_start, tz),
        grid_end_at=_local_midnight(to_day + timedelta(days=1), tz),
    )


def _last_synced(session: Session, workspace_id: int, rep_id: int | None) -> datetime | None:
    # A team sync covers every rep, so it also counts as the last sync of a single rep.
    scopes = [TEAM_SCOPE] if rep_id is None else [TEAM_SCOPE, rep_id]
    return session.scalar(
        select(func.max(SalesboardSync.synced_at)).where(
            SalesboardSync.workspace_id == workspace_id, SalesboardSync.rep_scope.in_(scopes)
        )
    )


def _first_dirty_day(
    session: Session, workspace_id: int, rep_id: int | None, tz: ZoneInfo, since: datetime | None
) -> date | None:
    """The earliest local day of activity ingested since `since` (all activity when None)."""
    conditions = [SalesActivity.workspace_id == workspace_id]
    if since is not None:
        conditions.append(SalesActivity.ingested_at >= since - LATE_COMMIT_MARGIN)
    if rep_id is not None:
        conditions.append(SalesActivity.rep_id == rep_id)
    earliest = session.scalar(select(func.min(SalesActivity.occurred_at)).where(*conditions))
    return None if earliest is None else earliest.astimezone(tz).date()


def load_board(session: Session, workspace_id: int, day: date, rep_id: int | None = None) -> list[dict[str, Any]]:
    """The stored metrics of one day (what the salesboard shows), best score first."""
    query = select(AISalesboardMetric).where(
        AISalesboardMetric.workspace_id == workspace_id, AISalesboardMetric.metric_date == day
    )
    if rep_id is not None:
        query = query.where(AISalesboardMetric.rep_id == rep_id)
    rows = session.scalars(query.order_by(AISalesboardMetric.performance_score.desc(), AISalesboardMetric.rep_id))
    return [
        {
            "rep_id": row.rep_id,
            "performance_score": row.performance_score,
            "calls": row.calls,
            "emails_sent": row.emails_sent,
            "meetings_booked": row.meetings_booked,
            "meetings_held": row.meetings_held,
            "pipeline_value_cents": row.pipeline_value_cents,
            "strengths": row.insights.get("strengths", []),
            "opportunities": row.insights.get("opportunities", []),
            "coaching_source": row.coaching_source.value if row.coaching_source else None,
        }
        for row in rows
    ]


def _refresh_coaching(
    session: Session, workspace_id: int, day: date, rep_id: int | None, coach: coaching.Coach
) -> dict[str, int]:
    query = select(AISalesboardMetric).where(
        AISalesboardMetric.workspace_id == workspace_id, AISalesboardMetric.metric_date == day
    )
    if rep_id is not None:
        query = query.where(AISalesboardMetric.rep_id == rep_id)
    rows = list(session.scalars(query))
    updates = coaching.plan_coaching(rows, coach)
    if updates:
        session.execute(update(AISalesboardMetric), updates)
    return {
        "coached": len(updates),
        "coached_by_llm": sum(1 for u in updates if u["coaching_source"] == coaching.CoachingSource.LLM),
    }


def sync_salesboard(
    session: Session,
    workspace_id: int,
    rep_id: int | None = None,
    force: bool = False,
    now: datetime | None = None,
    coach: coaching.Coach | None = None,
) -> dict[str, Any]:
    """Bring a workspace's (or one rep's) board up to date; see the module docstring for the steps."""
    now = now or datetime.now(UTC)
    workspace = session.get(Workspace, workspace_id)
    if workspace is None:
        raise BadInput(f"workspace {workspace_id} does not exist")
    if (
        rep_id is not None
        and session.scalar(
            select(TeamMember.id).where(TeamMember.id == rep_id, TeamMember.workspace_id == workspace_id)
        )
        is None
    ):
        raise BadInput(f"team member {rep_id} is not in workspace {workspace_id}")
    # Concurrent syncs of one workspace queue up here; the second then finds the cache fresh.
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('sales.sync_salesboard'), :key)"),
        {"key": workspace_id % 2**31},
    )
    tz = ZoneInfo(workspace.timezone)
    today = now.astimezone(tz).date()
    last = _last_synced(session, workspace_id, rep_id)
    scope = {"workspace_id": workspace_id, "rep_id": rep_id, "metric_date": today.isoformat()}
    if not force and last is not None and now - last < CACHE_TTL:
        return {
            **scope,
            "cached": True,
            "synced_at": last.isoformat(),
            "metrics": load_board(session, workspace_id, today, rep_id),
        }

    oldest_allowed = today - timedelta(days=BACKFILL_DAYS - 1)
    dirty = _first_dirty_day(session, workspace_id, rep_id, tz, last)
    from_day = min(max(dirty, oldest_allowed), today) if dirty is not None else today
    window = sync_window(from_day, today, tz)
    # The planner cannot estimate the rep-by-day grid (a set-returning function crossed with a CTE) and its
    # inflated cost switches JIT on: compiling this wide statement took ~0.6-4 s against ~50 ms of execution.
    session.execute(text("SET LOCAL jit = off"))
    # The daily aggregate of a 90-day backfill spills to disk at the default 4 MB.
    session.execute(text("SET LOCAL work_mem = '64MB'"))
    written = session.execute(
        SYNC_SQL,
        {
            "workspace_id": workspace_id,
            "rep_id": rep_id,
            "tz": workspace.timezone,
            "from_day": window.from_day,
            "to_day": window.to_day,
            "grid_start": window.grid_start,
            "grid_start_at": window.grid_start_at,
            "grid_end_at": window.grid_end_at,
            "synced_at": now,
        },
    ).rowcount
    session.execute(
        insert(SalesboardSync)
        .values(workspace_id=workspace_id, rep_scope=TEAM_SCOPE if rep_id is None else rep_id, synced_at=now)
        .on_conflict_do_update(index_elements=["workspace_id", "rep_scope"], set_={"synced_at": now})
    )
    coached = _refresh_coaching(session, workspace_id, today, rep_id, coach or coaching.default_coach())
    return {
        **scope,
        "cached": False,
        "synced_at": now.isoformat(),
        "from_day": from_day.isoformat(),
        "rows_written": written,
        **coached,
        "metrics": load_board(session, workspace_id, today, rep_id),
    }
