"""AI Salesboard sync: a daily rollup refreshed where activity landed, then set-based board rows, then coaching.

Per sync (see README, "Sales"), under a per-workspace advisory lock:
1. The 5-minute cache: a sync of the same scope (the team, or a rep the team sync also covers) within
   5 minutes of the last returns the stored metrics unless `force`.
2. The rollup (`sales_rep_days`, one narrow row per rep and local day): only the days of activity ingested
   since the last rollup (minus a margin for transactions that committed late) are recomputed from raw
   activity, from the earliest such day on. The first sync, or one after the workspace changed its timezone,
   rolls up the board's 90 days plus the 36 days of history the windows need, with the open pipeline of every
   older deal folded into the first day.
3. The board: one `WITH … INSERT … ON CONFLICT DO UPDATE` computes every (rep, day) row from the earliest day
   the rollup changed (or that has no rows yet) to today, from the rollup alone: trailing windows (as differences
   of running totals), open pipeline, the team-relative score and the insights as typed columns. Unchanged rows
   are not rewritten; rows of reps no longer on the board that day are removed in the same statement.
4. Coaching for today's rows whose situation changed (tasks.sales.coaching): the LLM layer if configured,
   else offline rules; past days keep the coaching they had when they were today.

Every local-day cut is made by PostgreSQL (`AT TIME ZONE`), so days, their boundaries and "today" come from one
timezone database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Row, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.core import TeamMember, Workspace
from models.sales import ActivityType, AISalesboardMetric, SalesboardRollup, SalesboardSync, SalesRepDay
from tasks.sales import coaching
from tasks.sales.scoring import (
    COMPONENT_SQL,
    OPPORTUNITY_PERCENTILE,
    SCORE_WEIGHTS,
    STRENGTH_PERCENTILE,
    component_values,
    percentile_sql,
    score_sql,
)
from workers.errors import BadInput

CACHE_TTL = timedelta(minutes=5)
# How far back the board reaches: a quarter of days.
BACKFILL_DAYS = 90
# An ingest transaction can commit after a sync that started later read its snapshot; re-reading activity
# ingested this long before the last rollup catches it (rolling a day up twice is harmless).
LATE_COMMIT_MARGIN = timedelta(minutes=10)
# History before an output day that the windows need: trends compare the last 7 days with the 30 before them.
HISTORY_DAYS = 36
TEAM_SCOPE = 0

# Rollup column -> the activity type it counts.
DAY_COUNTS: dict[str, ActivityType] = {
    "calls": ActivityType.CALL,
    "emails_sent": ActivityType.EMAIL_SENT,
    "emails_opened": ActivityType.EMAIL_OPENED,
    "emails_replied": ActivityType.EMAIL_REPLIED,
    "meetings_booked": ActivityType.MEETING_BOOKED,
    "meetings_held": ActivityType.MEETING_HELD,
    "deals_won": ActivityType.DEAL_WON,
    "deals_lost": ActivityType.DEAL_LOST,
}
_DEAL_TYPES = "('deal_stage_changed', 'deal_won', 'deal_lost')"
# Metrics with a trend (last 7 days against the prior 7 and the 30 before them).
TREND_METRICS = ("calls", "emails_sent", "emails_replied", "meetings_booked", "meetings_held", "won_value")
FUNNEL = ("emails_sent", "emails_opened", "emails_replied", "meetings_booked", "meetings_held", "deals_won")
CONVERSIONS = (
    ("sent_to_opened", "emails_opened", "emails_sent"),
    ("opened_to_replied", "emails_replied", "emails_opened"),
    ("replied_to_meeting_booked", "meetings_booked", "emails_replied"),
    ("booked_to_held", "meetings_held", "meetings_booked"),
    ("held_to_won", "deals_won", "meetings_held"),
)
# Flows summed over the last 30 days: the funnel, losses for the win rate, won value, and every event (presence).
_FLOWS_30D = (*FUNNEL, "deals_lost", "won_value", "events")


def flow_column(flow: str, window: str) -> str:
    """Board column of a flow summed over a window ("7d", "prior_7d", "prior_30d", "30d"); money ends in _cents."""
    if flow == "won_value":
        return f"won_value_{window}_cents"
    return f"{flow}_{window}"


# The board's figures, in insert order. Everything but the identity, coaching and timestamps.
_WINDOW_COLUMNS = (
    *(flow_column(flow, "30d") for flow in _FLOWS_30D if flow != "events"),
    *(flow_column(metric, window) for metric in TREND_METRICS for window in ("7d", "prior_7d", "prior_30d")),
    "pipeline_7d_ago_cents",
    "pipeline_30d_ago_cents",
)
BOARD_FIGURES = (
    *DAY_COUNTS,
    "pipeline_value_cents",
    "won_value_cents",
    *_WINDOW_COLUMNS,
    "performance_score",
    *(f"{name}_percentile" for name in SCORE_WEIGHTS),
    "team_size",
    *(f"team_median_{name}" for name in SCORE_WEIGHTS),
    "strengths",
    "opportunities",
)
_ROLLUP_VALUES = (*DAY_COUNTS, "events", "won_value_cents", "pipeline_change_cents")


def _build_rollup_sql() -> str:
    count_filters = ",\n           ".join(
        f"count(*) FILTER (WHERE a.activity_type = '{kind.value}')::int AS {column}"
        for column, kind in DAY_COUNTS.items()
    )
    counts = ", ".join((*DAY_COUNTS, "events"))
    zero_counts = ", ".join("0" for _ in (*DAY_COUNTS, "events"))
    sums = ", ".join(f"sum({c})::int" for c in (*DAY_COUNTS, "events"))
    return f"""
WITH
counted AS (
    SELECT a.rep_id, (a.occurred_at AT TIME ZONE :tz)::date AS metric_date,
           {count_filters},
           count(*)::int AS events
    FROM sales_activities a
    WHERE a.workspace_id = :workspace_id AND a.occurred_at >= (CAST(:from_day AS timestamp) AT TIME ZONE :tz)
    GROUP BY 1, 2
),
deal_leads AS (
    -- Deals (a deal is its lead) with an event to roll up; all of them when older history folds in.
    SELECT DISTINCT a.lead_id
    FROM sales_activities a
    WHERE a.workspace_id = :workspace_id AND a.activity_type IN {_DEAL_TYPES}
      AND (CAST(:fold AS boolean) OR a.occurred_at >= (CAST(:from_day AS timestamp) AT TIME ZONE :tz))
),
deal_events AS (
    -- Every event of those deals, with its open value (the amount while in a stage, 0 once won or lost)
    -- and the rep and open value of the event before it, which it replaces.
    SELECT a.rep_id, a.occurred_at, a.activity_type, a.amount_cents,
           CASE WHEN a.activity_type = 'deal_stage_changed' THEN a.amount_cents ELSE 0 END AS open_value,
           lag(a.rep_id) OVER deal AS prev_rep,
           lag(CASE WHEN a.activity_type = 'deal_stage_changed' THEN a.amount_cents ELSE 0 END) OVER deal
               AS prev_open_value
    FROM sales_activities a
    WHERE a.workspace_id = :workspace_id AND a.activity_type IN {_DEAL_TYPES}
      AND a.lead_id IN (SELECT lead_id FROM deal_leads)
    WINDOW deal AS (PARTITION BY a.lead_id ORDER BY a.occurred_at, a.id)
),
rolled AS (
    -- Events before the first day only count when folding; they land on the first day.
    SELECT *, greatest((occurred_at AT TIME ZONE :tz)::date, CAST(:from_day AS date)) AS metric_date
    FROM deal_events
    WHERE CAST(:fold AS boolean) OR occurred_at >= (CAST(:from_day AS timestamp) AT TIME ZONE :tz)
),
parts AS (
    SELECT rep_id, metric_date, {counts}, 0::bigint AS won_value_cents, 0::bigint AS pipeline_change_cents
    FROM counted
    UNION ALL
    SELECT rep_id, metric_date, {zero_counts}, 0, open_value FROM rolled
    UNION ALL
    SELECT prev_rep, metric_date, {zero_counts}, 0, -prev_open_value FROM rolled WHERE prev_rep IS NOT NULL
    UNION ALL
    -- A win is worth its own amount, else the deal's last open value.
    SELECT rep_id, metric_date, {zero_counts}, coalesce(amount_cents, prev_open_value, 0), 0
    FROM rolled
    WHERE activity_type = 'deal_won' AND occurred_at >= (CAST(:from_day AS timestamp) AT TIME ZONE :tz)
)
INSERT INTO sales_rep_days (workspace_id, metric_date, rep_id, {", ".join(_ROLLUP_VALUES)})
SELECT :workspace_id, metric_date, rep_id, {sums}, sum(won_value_cents)::bigint, sum(pipeline_change_cents)::bigint
FROM parts
-- Only this workspace's members: ingest checks it, and a board never shows another tenant's rep.
WHERE rep_id IN (SELECT id FROM team_members WHERE workspace_id = :workspace_id)
GROUP BY metric_date, rep_id
"""


# The rollup column each windowed flow sums.
_CUMULATED = {
    flow: "won_value_cents" if flow == "won_value" else flow for flow in dict.fromkeys(_FLOWS_30D + TREND_METRICS)
}


def _lag_days(flow: str) -> tuple[int, ...]:
    """How many days back a flow's running total is needed: the days (d-k, d] sum to total(d) - total(d-k)."""
    days = {30} if flow in _FLOWS_30D else set()
    if flow in TREND_METRICS:
        days |= {7, 14, 37}
    return tuple(sorted(days))


def _window_figures() -> str:
    """Each window as a difference of running totals: last 7 days = total(d) - total(d-7), and so on."""
    columns = []
    for flow, source in _CUMULATED.items():
        kind = "bigint" if flow == "won_value" else "int"
        if flow in _FLOWS_30D:
            columns.append(f"({source}_total - {source}_total_30)::{kind} AS {flow_column(flow, '30d')}")
        if flow in TREND_METRICS:
            columns.append(f"({source}_total - {source}_total_7)::{kind} AS {flow_column(flow, '7d')}")
            columns.append(f"({source}_total_7 - {source}_total_14)::{kind} AS {flow_column(flow, 'prior_7d')}")
            columns.append(f"({source}_total_7 - {source}_total_37)::{kind} AS {flow_column(flow, 'prior_30d')}")
    return ",\n        ".join(columns)


def _build_board_sql() -> str:
    grid_values = ", ".join(f"coalesce(d.{c}, 0) AS {c}" for c in _ROLLUP_VALUES[:-1])
    totals = ",\n        ".join(
        f"(sum({source}) OVER running)::bigint AS {source}_total" for source in _CUMULATED.values()
    )
    lags = ",\n        ".join(
        (
            *(
                f"lag({source}_total, {days}, 0::bigint) OVER by_day AS {source}_total_{days}"
                for flow, source in _CUMULATED.items()
                for days in _lag_days(flow)
            ),
            *(
                f"lag(pipeline_value_cents, {days}, 0::bigint) OVER by_day AS pipeline_value_cents_{days}"
                for days in (7, 30)
            ),
        )
    )
    components = ",\n        ".join(f"{expr} AS c_{name}" for name, expr in COMPONENT_SQL.items())
    percentiles = ",\n        ".join(f"{percentile_sql(f'c_{name}')} AS {name}_percentile" for name in SCORE_WEIGHTS)
    medians = ",\n        ".join(
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY c_{name}) AS team_median_{name}" for name in SCORE_WEIGHTS
    )
    strengths = ", ".join(
        f"CASE WHEN r.{name}_percentile >= {STRENGTH_PERCENTILE} THEN '{name}' END" for name in SCORE_WEIGHTS
    )
    opportunities = ", ".join(
        f"CASE WHEN r.{name}_percentile <= {OPPORTUNITY_PERCENTILE} THEN '{name}' END" for name in SCORE_WEIGHTS
    )
    special = {
        "performance_score": score_sql(),
        "strengths": f"array_remove(ARRAY[{strengths}], NULL)",
        "opportunities": f"array_remove(ARRAY[{opportunities}], NULL)",
        **{f"team_median_{name}": f"m.team_median_{name}" for name in SCORE_WEIGHTS},
    }
    selected = ",\n           ".join(f"{special.get(c, f'r.{c}')} AS {c}" for c in BOARD_FIGURES)
    figures = ", ".join(BOARD_FIGURES)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*BOARD_FIGURES, "synced_at"))
    return f"""
WITH
opening AS (
    -- Open pipeline carried into the history window from every earlier day of the rollup.
    SELECT rep_id, sum(pipeline_change_cents)::bigint AS pipeline_change_cents
    FROM sales_rep_days
    WHERE workspace_id = :workspace_id AND metric_date < CAST(:history_start AS date)
    GROUP BY rep_id
    HAVING sum(pipeline_change_cents) <> 0
),
reps AS (
    SELECT rep_id FROM sales_rep_days
    WHERE workspace_id = :workspace_id AND metric_date >= CAST(:history_start AS date)
    UNION
    SELECT rep_id FROM opening
),
dense AS (
    -- Every rep on every day from the day before the history window to the last output day (the opening
    -- pipeline lands on that first day), so that "7 days ago" is 7 rows back.
    SELECT r.rep_id, g.day::date AS metric_date, {grid_values},
           coalesce(d.pipeline_change_cents, 0) + coalesce(o.pipeline_change_cents, 0) AS pipeline_change_cents
    FROM reps r
    CROSS JOIN generate_series(CAST(:history_start AS date) - 1, CAST(:to_day AS date), interval '1 day') AS g(day)
    LEFT JOIN sales_rep_days d
        ON d.workspace_id = :workspace_id AND d.rep_id = r.rep_id AND d.metric_date = g.day::date
       AND d.metric_date BETWEEN CAST(:history_start AS date) AND CAST(:to_day AS date)
    LEFT JOIN opening o ON o.rep_id = r.rep_id AND g.day::date = CAST(:history_start AS date) - 1
),
totals AS (
    -- Running totals in one pass (every function shares one window)...
    SELECT rep_id, metric_date, {", ".join(DAY_COUNTS)}, won_value_cents,
        (sum(pipeline_change_cents) OVER running)::bigint AS pipeline_value_cents,
        {totals}
    FROM dense
    WINDOW running AS (PARTITION BY rep_id ORDER BY metric_date ROWS UNBOUNDED PRECEDING)
),
lagged AS (
    -- ...and the totals of 7, 14, 30 and 37 days before, in a second.
    SELECT totals.*,
        {lags}
    FROM totals
    WINDOW by_day AS (PARTITION BY rep_id ORDER BY metric_date)
),
windowed AS (
    SELECT rep_id, metric_date, {", ".join(DAY_COUNTS)}, won_value_cents,
        pipeline_value_cents,
        pipeline_value_cents_7 AS pipeline_7d_ago_cents,
        pipeline_value_cents_30 AS pipeline_30d_ago_cents,
        {_window_figures()}
    FROM lagged
    WHERE metric_date >= CAST(:from_day AS date)
),
components AS (
    -- A rep is on the board for a day if they did anything in the 30 days up to it or hold open pipeline.
    SELECT windowed.*,
        {components}
    FROM windowed
    WHERE events_30d > 0 OR pipeline_value_cents <> 0
),
ranked AS (
    SELECT components.*,
        count(*) OVER (PARTITION BY metric_date) AS team_size,
        {percentiles}
    FROM components
),
medians AS (
    SELECT metric_date,
        {medians}
    FROM components
    GROUP BY metric_date
),
board AS (
    SELECT r.rep_id, r.metric_date,
           {selected}
    FROM ranked r
    JOIN medians m ON m.metric_date = r.metric_date
    WHERE CAST(:rep_id AS bigint) IS NULL OR r.rep_id = CAST(:rep_id AS bigint)
),
written AS (
    INSERT INTO ai_salesboard_metrics (workspace_id, rep_id, metric_date, {figures}, synced_at)
    SELECT :workspace_id, rep_id, metric_date, {figures}, :synced_at
    FROM board
    ON CONFLICT (workspace_id, rep_id, metric_date) DO UPDATE SET {updates}
    -- An unchanged row is left alone: no dead tuple, and its synced_at says when it last changed.
    WHERE ({", ".join(f"ai_salesboard_metrics.{c}" for c in BOARD_FIGURES)})
        IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in BOARD_FIGURES)})
    RETURNING 1
),
removed AS (
    -- A rep who left the board for a recomputed day (a deal moved away, nothing else in 30 days).
    DELETE FROM ai_salesboard_metrics m
    WHERE m.workspace_id = :workspace_id
      AND m.metric_date BETWEEN CAST(:from_day AS date) AND CAST(:to_day AS date)
      AND (CAST(:rep_id AS bigint) IS NULL OR m.rep_id = CAST(:rep_id AS bigint))
      AND NOT EXISTS (SELECT 1 FROM board b WHERE b.rep_id = m.rep_id AND b.metric_date = m.metric_date)
    RETURNING 1
)
SELECT (SELECT count(*) FROM written) AS written, (SELECT count(*) FROM removed) AS removed
"""


ROLLUP_SQL = text(_build_rollup_sql())
BOARD_SQL = text(_build_board_sql())
_LOCAL_DAY = text("SELECT (CAST(:at AS timestamptz) AT TIME ZONE :tz)::date")
_FIRST_DIRTY_DAY = text(
    "SELECT min((occurred_at AT TIME ZONE :tz)::date) FROM sales_activities "
    "WHERE workspace_id = :workspace_id AND ingested_at >= :since"
)


@dataclass(frozen=True)
class RollupRefresh:
    """What a rollup refresh did: the first day it rewrote (None: nothing new) and whether it rebuilt."""

    from_day: date | None
    rebuilt: bool


def _local_day(session: Session, at: datetime, timezone: str) -> date:
    return session.execute(_LOCAL_DAY, {"at": at, "tz": timezone}).scalar_one()


def _last_synced(session: Session, workspace_id: int, rep_id: int | None) -> datetime | None:
    # A team sync covers every rep, so it also counts as the last sync of a single rep.
    scopes = [TEAM_SCOPE] if rep_id is None else [TEAM_SCOPE, rep_id]
    return session.scalar(
        select(func.max(SalesboardSync.synced_at)).where(
            SalesboardSync.workspace_id == workspace_id, SalesboardSync.rep_scope.in_(scopes)
        )
    )


def oldest_board_day(today: date) -> date:
    return today - timedelta(days=BACKFILL_DAYS - 1)


def refresh_rollup(
    session: Session, workspace_id: int, timezone: str, today: date, now: datetime
) -> tuple[SalesboardRollup, RollupRefresh]:
    """Bring the workspace's rollup up to date; the caller holds the workspace's sync lock."""
    state = session.get(SalesboardRollup, workspace_id, populate_existing=True)
    first_board_day = oldest_board_day(today)
    if state is None or state.timezone != timezone:
        # First sync, or the day cut moved: every stored day is wrong, roll the whole range up again.
        session.execute(delete(SalesRepDay).where(SalesRepDay.workspace_id == workspace_id))
        covered_from = first_board_day - timedelta(days=HISTORY_DAYS)
        if state is None:
            state = SalesboardRollup(workspace_id=workspace_id, rolled_up_at=now)
            session.add(state)
        state.timezone = timezone
        state.covered_from = covered_from
        state.board_dirty_from = first_board_day
        state.board_computed_through = None
        from_day: date | None = covered_from
        fold = rebuilt = True
    else:
        dirty = session.execute(
            _FIRST_DIRTY_DAY,
            {"workspace_id": workspace_id, "tz": timezone, "since": state.rolled_up_at - LATE_COMMIT_MARGIN},
        ).scalar_one()
        rebuilt = False
        # Activity older than the rollup changes the open pipeline folded into its first day.
        fold = dirty is not None and dirty <= state.covered_from
        from_day = None if dirty is None else max(dirty, state.covered_from)
    if from_day is not None:
        session.execute(
            delete(SalesRepDay).where(SalesRepDay.workspace_id == workspace_id, SalesRepDay.metric_date >= from_day)
        )
        session.execute(ROLLUP_SQL, {"workspace_id": workspace_id, "tz": timezone, "from_day": from_day, "fold": fold})
        changed = max(from_day, first_board_day)
        state.board_dirty_from = changed if state.board_dirty_from is None else min(state.board_dirty_from, changed)
    state.rolled_up_at = now
    session.flush()
    return state, RollupRefresh(from_day=from_day, rebuilt=rebuilt)


def board_from_day(state: SalesboardRollup, today: date) -> date:
    """The first board day to compute: the earliest the rollup changed, or that has no rows yet; today at least."""
    candidates = [today]
    if state.board_dirty_from is not None:
        candidates.append(state.board_dirty_from)
    if state.board_computed_through is not None:
        candidates.append(state.board_computed_through + timedelta(days=1))
    else:
        candidates.append(oldest_board_day(today))
    return max(min(candidates), oldest_board_day(today))


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator > 0 else None


def _change(current: float, prior: float) -> float | None:
    return round((current - prior) / prior, 3) if prior > 0 else None


def board_view(row: Any) -> dict[str, Any]:
    """A stored board row in the documented shapes: score components, funnel, conversion rates and insights."""
    values = component_values(row)
    components = {
        name: {
            "value": round(values[name], 4),
            "percentile": round(getattr(row, f"{name}_percentile"), 3),
            "team_median": round(getattr(row, f"team_median_{name}"), 4),
            "weight": weight,
        }
        for name, weight in SCORE_WEIGHTS.items()
    }
    month = {flow: getattr(row, flow_column(flow, "30d")) for flow in (*FUNNEL, "deals_lost")}
    conversion_rates: dict[str, float | None] = {
        name: _rate(month[numerator], month[denominator]) for name, numerator, denominator in CONVERSIONS
    }
    conversion_rates["win_rate"] = _rate(month["deals_won"], month["deals_won"] + month["deals_lost"])
    trends: dict[str, dict[str, Any]] = {}
    for metric in TREND_METRICS:
        last, prior, prior_30 = (getattr(row, flow_column(metric, w)) for w in ("7d", "prior_7d", "prior_30d"))
        weekly = prior_30 * 7 / 30
        trends[metric] = {
            "last_7d": last,
            "prior_7d": prior,
            "change_vs_prior_7d": _change(last, prior),
            "prior_30d_weekly_avg": round(weekly, 2),
            "change_vs_prior_30d": _change(last, weekly),
        }
    pipeline = row.pipeline_value_cents
    trends["pipeline_value_cents"] = {
        "now": pipeline,
        "7d_ago": row.pipeline_7d_ago_cents,
        "30d_ago": row.pipeline_30d_ago_cents,
        "change_vs_7d_ago": _change(pipeline, row.pipeline_7d_ago_cents),
        "change_vs_30d_ago": _change(pipeline, row.pipeline_30d_ago_cents),
    }
    # Strongest first, weakest first: the first of each is what coaching names.
    by_percentile = sorted(SCORE_WEIGHTS, key=lambda name: (-components[name]["percentile"], name))
    return {
        "performance_score": row.performance_score,
        "score_components": components,
        "funnel": [{"stage": stage, "count": month[stage]} for stage in FUNNEL],
        "conversion_rates": conversion_rates,
        "insights": {
            "strengths": [name for name in by_percentile if name in row.strengths],
            "opportunities": [name for name in reversed(by_percentile) if name in row.opportunities],
            "trends": trends,
            "team_size": row.team_size,
        },
    }


def _board_rows(session: Session, workspace_id: int, day: date, rep_id: int | None) -> list[Row[Any]]:
    table = AISalesboardMetric.__table__
    query = select(table).where(table.c.workspace_id == workspace_id, table.c.metric_date == day)
    if rep_id is not None:
        query = query.where(table.c.rep_id == rep_id)
    return list(session.execute(query.order_by(table.c.performance_score.desc(), table.c.rep_id)))


_BOARD_SUMMARY = (
    "rep_id",
    "performance_score",
    "calls",
    "emails_sent",
    "meetings_booked",
    "meetings_held",
    "pipeline_value_cents",
    "strengths",
    "opportunities",
    "coaching_source",
)


def load_board(session: Session, workspace_id: int, day: date, rep_id: int | None = None) -> list[dict[str, Any]]:
    """The stored metrics of one day (what the salesboard shows), best score first."""
    table = AISalesboardMetric.__table__
    query = select(*(table.c[name] for name in _BOARD_SUMMARY)).where(
        table.c.workspace_id == workspace_id, table.c.metric_date == day
    )
    if rep_id is not None:
        query = query.where(table.c.rep_id == rep_id)
    rows = session.execute(query.order_by(table.c.performance_score.desc(), table.c.rep_id)).mappings()
    return [
        {
            **row,
            "strengths": list(row["strengths"]),
            "opportunities": list(row["opportunities"]),
            "coaching_source": None if row["coaching_source"] is None else str(row["coaching_source"]),
        }
        for row in rows
    ]


def _refresh_coaching(
    session: Session, workspace_id: int, day: date, rep_id: int | None, coach: coaching.Coach
) -> dict[str, int]:
    # Weakest reps first: they get the LLM's attention when its per-sync budget cannot cover the team.
    rows = sorted(_board_rows(session, workspace_id, day, rep_id), key=lambda r: (r.performance_score, r.rep_id))
    candidates = [
        coaching.CoachingCandidate(
            row_id=row.id,
            inputs=coaching.CoachingInput.from_view(board_view(row)),
            source=None if row.coaching_source is None else coaching.CoachingSource(row.coaching_source),
            situation_hash=row.coaching_input_hash,
            recommendations=row.coaching_recommendations,
        )
        for row in rows
    ]
    updates = coaching.plan_coaching(candidates, coach)
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
    # Concurrent syncs of one workspace (two beats, a redelivery, an on-demand sync) queue up here; the second
    # then reads the first's committed rollup and board (READ COMMITTED: each statement sees the latest commit).
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('sales.sync_salesboard'), :key)"),
        {"key": workspace_id % 2**31},
    )
    timezone = workspace.timezone
    today = _local_day(session, now, timezone)
    last = _last_synced(session, workspace_id, rep_id)
    scope = {"workspace_id": workspace_id, "rep_id": rep_id, "metric_date": today.isoformat()}
    if not force and last is not None and now - last < CACHE_TTL:
        return {
            **scope,
            "cached": True,
            "synced_at": last.isoformat(),
            "metrics": load_board(session, workspace_id, today, rep_id),
        }

    # The planner cannot estimate the rep-by-day grid (a set-returning function crossed with a CTE) and its
    # inflated cost switches JIT on: compiling these wide statements took ~0.6-4 s against ~50 ms of execution.
    session.execute(text("SET LOCAL jit = off"))
    # A full rollup of 90 days of a large team spills to disk at the default 4 MB.
    session.execute(text("SET LOCAL work_mem = '64MB'"))
    state, rolled = refresh_rollup(session, workspace_id, timezone, today, now)
    from_day = board_from_day(state, today)
    outcome = session.execute(
        BOARD_SQL,
        {
            "workspace_id": workspace_id,
            "rep_id": rep_id,
            "from_day": from_day,
            "to_day": today,
            "history_start": from_day - timedelta(days=HISTORY_DAYS),
            "synced_at": now,
        },
    ).one()
    if rep_id is None:
        # Only a team sync brings every rep's rows up to date; a rep sync leaves the dirty range for it.
        state.board_dirty_from = None
        state.board_computed_through = today
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
        "rolled_up_from": None if rolled.from_day is None else rolled.from_day.isoformat(),
        "rollup_rebuilt": rolled.rebuilt,
        "from_day": from_day.isoformat(),
        "rows_written": outcome.written,
        "rows_removed": outcome.removed,
        **coached,
        "metrics": load_board(session, workspace_id, today, rep_id),
    }
