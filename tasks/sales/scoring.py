"""The AI Salesboard's performance score and the SQL that computes it for a whole team at once.

Score (0-100) = 100 * sum(weight_i * percentile_i), where percentile_i is the rep's mid-rank percentile of
component i among the reps active in the workspace that day (ties share the average rank; a team of one
sits at 0.5). Relative to the team, so a quiet week for everyone is not a bad score for anyone, and one
outlier cannot compress everyone else the way min-max scaling would.

Components (windows end on the row's day; a single day is too few events to rank):
* activity   — calls + emails sent, last 7 days
* reply_rate — email replies / emails sent, last 30 days (0 with no sends)
* meetings   — meetings booked + meetings held, last 7 days
* pipeline   — open pipeline value at the end of the day
* wins       — won deal value, last 30 days (deals close rarely; 7 days would mostly be zeros)
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Protocol

# Outcomes weigh more than effort (meetings, pipeline and wins: 0.65), but effort is a quarter of the score
# because it is the lever a rep controls today. Reply rate is the quality check on the emails counted in activity.
SCORE_WEIGHTS: MappingProxyType[str, float] = MappingProxyType(
    {
        "activity": 0.20,
        "reply_rate": 0.15,
        "meetings": 0.25,
        "pipeline": 0.20,
        "wins": 0.20,
    }
)

# SQL expression of each component over the `windowed` CTE of the board statement; `component_values` below is the
# same arithmetic over a stored row, and a test holds the two together.
COMPONENT_SQL: MappingProxyType[str, str] = MappingProxyType(
    {
        "activity": "(calls_7d + emails_sent_7d)::float8",
        "reply_rate": "CASE WHEN emails_sent_30d > 0 THEN emails_replied_30d::float8 / emails_sent_30d ELSE 0 END",
        "meetings": "(meetings_booked_7d + meetings_held_7d)::float8",
        "pipeline": "pipeline_value_cents::float8",
        "wins": "won_value_30d_cents::float8",
    }
)


class ScoredRow(Protocol):
    calls_7d: int
    emails_sent_7d: int
    emails_sent_30d: int
    emails_replied_30d: int
    meetings_booked_7d: int
    meetings_held_7d: int
    pipeline_value_cents: int
    won_value_30d_cents: int


def component_values(row: ScoredRow) -> dict[str, float]:
    """Each component's value for a stored board row (the Python twin of COMPONENT_SQL)."""
    sent = row.emails_sent_30d
    return {
        "activity": float(row.calls_7d + row.emails_sent_7d),
        "reply_rate": row.emails_replied_30d / sent if sent > 0 else 0.0,
        "meetings": float(row.meetings_booked_7d + row.meetings_held_7d),
        "pipeline": float(row.pipeline_value_cents),
        "wins": float(row.won_value_30d_cents),
    }


# A component at or above this team percentile is a strength, at or below the low one an opportunity.
STRENGTH_PERCENTILE = 0.75
OPPORTUNITY_PERCENTILE = 0.25

if abs(sum(SCORE_WEIGHTS.values()) - 1.0) > 1e-9 or set(SCORE_WEIGHTS) != set(COMPONENT_SQL):
    raise RuntimeError("score weights must cover every component and add up to 1")


def percentile_sql(value: str) -> str:
    """Mid-rank percentile of `value` among the rows of the same day: (below + ties/2) / (n - 1)."""
    return (
        f"CASE WHEN count(*) OVER (PARTITION BY metric_date) = 1 THEN 0.5::float8 ELSE "
        f"((rank() OVER (PARTITION BY metric_date ORDER BY {value}) - 1) "
        f"+ (count(*) OVER (PARTITION BY metric_date, {value}) - 1) / 2.0::float8) "
        f"/ (count(*) OVER (PARTITION BY metric_date) - 1) END"
    )


def score_sql() -> str:
    """The weighted score over the `<component>_percentile` columns, rounded to one decimal."""
    terms = " + ".join(f"{weight!r} * {name}_percentile" for name, weight in SCORE_WEIGHTS.items())
    return f"round((100 * ({terms}))::numeric, 1)::float8"
