"""Expansion opportunities: set-based detection over subscriptions, usage, seats, paywall hits and engagement.

Signals (README "Growth"), one candidate per (subscription, type):
* quota_threshold - a metric at >= 80 % of its plan limit this period (the fullest metric wins);
* quota_projection - below 80 % but on pace to pass the limit: usage to date * period days / elapsed days
  (only after `MIN_ELAPSED_DAYS`, so a busy first morning is not extrapolated over a month);
* seat_cap - members at or above the plan's seat cap;
* feature_gate - a member hit a feature the plan lacks in the last `FEATURE_GATE_DAYS` days;
* engaged_low_tier - free/starter workspace with stickiness >= 0.5 and low churn risk on its latest score.
Each names the cheapest higher plan that fits, the monthly revenue delta in cents and a 0-100 score.
An unresolved (open or presented) opportunity is refreshed in place - the partial unique index allows only one
per (subscription, type), so two overlapping runs converge on one row - and open ones not seen for `STALE_DAYS`
expire. A (subscription, type) the main app dismissed or converted is not raised again on the same plan for
`RESOLVED_COOLDOWN_DAYS`: without that, a dismissed upsell would be back as new within the hour.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from models.growth import UNRESOLVED_OPPORTUNITY_SQL
from tasks.growth import txn

THRESHOLD_SHARE = 0.8
MIN_ELAPSED_DAYS = 2.0
FEATURE_GATE_DAYS = 7
ENGAGED_STICKINESS = 0.5
ENGAGED_MAX_RISK = 40.0
LOW_TIER_MAX_RANK = 1  # free and starter
STALE_DAYS = 7
RESOLVED_COOLDOWN_DAYS = 30  # about one billing period: the next period's usage may tell a different story
RETENTION_FRESH_DAYS = 2

DETECT_SQL = text(
    f"""
WITH subs AS (
    SELECT s.id AS subscription_id, s.workspace_id, s.plan_code, p.rank, p.price_cents, p.limits, p.features,
           p.seats, s.current_period_start, s.current_period_end
    FROM subscriptions s JOIN plans p ON p.code = s.plan_code
    WHERE s.status IN ('trialing', 'active', 'past_due') AND s.ended_at IS NULL
      AND s.current_period_start <= :now AND s.current_period_end > :now
),
usage AS (
    SELECT subs.*, um.metric::text AS metric, um.quantity::float AS quantity,
           (subs.limits ->> um.metric::text)::float AS metric_limit,
           extract(epoch FROM least(CAST(:now AS timestamptz), subs.current_period_end) - subs.current_period_start)
               / 86400.0 AS elapsed_days,
           extract(epoch FROM subs.current_period_end - subs.current_period_start) / 86400.0 AS period_days
    FROM subs
    JOIN usage_metrics um ON um.subscription_id = subs.subscription_id
                         AND um.period_start = subs.current_period_start
    WHERE (subs.limits ->> um.metric::text) IS NOT NULL AND (subs.limits ->> um.metric::text)::float > 0
),
quota AS (
    SELECT *, quantity / metric_limit AS utilisation,
           CASE WHEN elapsed_days > 0 THEN quantity * period_days / elapsed_days END AS projected
    FROM usage
),
threshold_c AS (
    SELECT DISTINCT ON (subscription_id) subscription_id, workspace_id, plan_code, rank, price_cents,
           'quota_threshold' AS opportunity_type, metric, greatest(quantity, projected) AS need,
           least(100.0, 100.0 * utilisation) AS score,
           jsonb_build_object('metric', metric, 'usage', quantity, 'limit', metric_limit,
                              'utilisation', round(utilisation::numeric, 4), 'projected', round(projected::numeric, 1))
               AS details,
           NULL::int AS seats_needed, NULL::text AS feature
    FROM quota WHERE utilisation >= :threshold
    ORDER BY subscription_id, utilisation DESC, metric
),
projection_c AS (
    SELECT DISTINCT ON (subscription_id) subscription_id, workspace_id, plan_code, rank, price_cents,
           'quota_projection', metric, projected,
           least(100.0, 50.0 * projected / metric_limit),
           jsonb_build_object('metric', metric, 'usage', quantity, 'limit', metric_limit,
                              'projected', round(projected::numeric, 1),
                              'elapsed_days', round(elapsed_days::numeric, 2),
                              'period_days', round(period_days::numeric, 2)),
           NULL::int, NULL::text
    FROM quota
    WHERE utilisation < :threshold AND elapsed_days >= :min_elapsed AND projected > metric_limit
    ORDER BY subscription_id, projected / metric_limit DESC, metric
),
seat_c AS (
    SELECT subs.subscription_id, subs.workspace_id, subs.plan_code, subs.rank, subs.price_cents,
           'seat_cap', NULL::text, NULL::float, 80.0::float,
           jsonb_build_object('seats_used', m.seats_used, 'seat_cap', subs.seats),
           m.seats_used + 1, NULL::text
    FROM subs
    JOIN (SELECT workspace_id, count(*) AS seats_used FROM team_members GROUP BY workspace_id) m
      ON m.workspace_id = subs.workspace_id
    WHERE subs.seats IS NOT NULL AND m.seats_used >= subs.seats
),
gate_hits AS (
    SELECT subs.subscription_id, g.feature, count(*) AS attempts, count(DISTINCT g.user_id) AS users,
           max(g.occurred_at) AS last_attempt_at
    FROM subs
    JOIN feature_gate_events g ON g.workspace_id = subs.workspace_id
    WHERE g.occurred_at > :now - make_interval(days => :gate_days) AND g.occurred_at <= :now
      AND coalesce((subs.features ->> g.feature)::boolean, false) = false
    GROUP BY subs.subscription_id, g.feature
),
gate_c AS (
    SELECT DISTINCT ON (subs.subscription_id) subs.subscription_id, subs.workspace_id, subs.plan_code, subs.rank,
           subs.price_cents, 'feature_gate', NULL::text, NULL::float,
           least(100.0, 50.0 + 10.0 * h.attempts)::float,
           jsonb_build_object('feature', h.feature, 'attempts', h.attempts, 'users', h.users,
                              'last_attempt_at', h.last_attempt_at),
           NULL::int, h.feature
    FROM gate_hits h JOIN subs ON subs.subscription_id = h.subscription_id
    ORDER BY subs.subscription_id, h.attempts DESC, h.feature
),
engaged_c AS (
    SELECT subs.subscription_id, subs.workspace_id, subs.plan_code, subs.rank, subs.price_cents,
           'engaged_low_tier', NULL::text, NULL::float,
           least(100.0, 100.0 * rm.stickiness * (1 - rm.churn_risk_score / 100.0))::float,
           jsonb_build_object('stickiness', round(rm.stickiness::numeric, 4),
                              'churn_risk_score', round(rm.churn_risk_score::numeric, 2), 'as_of', rm.as_of),
           NULL::int, NULL::text
    FROM subs
    JOIN LATERAL (
        SELECT r.stickiness, r.churn_risk_score, r.as_of FROM retention_metrics r
        WHERE r.workspace_id = subs.workspace_id ORDER BY r.as_of DESC LIMIT 1
    ) rm ON true
    WHERE subs.rank <= :low_tier_rank AND rm.as_of >= CAST(:fresh_since AS date)
      AND rm.stickiness >= :engaged_stickiness AND rm.churn_risk_score < :engaged_max_risk
),
candidates AS (
    SELECT * FROM threshold_c UNION ALL SELECT * FROM projection_c UNION ALL SELECT * FROM seat_c
    UNION ALL SELECT * FROM gate_c UNION ALL SELECT * FROM engaged_c
),
suggested AS (
    SELECT c.*, up.code AS suggested_plan_code, up.price_cents - c.price_cents AS mrr_delta
    FROM candidates c
    JOIN LATERAL (
        SELECT p.code, p.price_cents FROM plans p
        WHERE p.rank > c.rank
          AND (c.metric IS NULL OR p.limits ->> c.metric IS NULL OR (p.limits ->> c.metric)::float >= c.need)
          AND (c.seats_needed IS NULL OR p.seats IS NULL OR p.seats >= c.seats_needed)
          AND (c.feature IS NULL OR coalesce((p.features ->> c.feature)::boolean, false))
        ORDER BY p.rank LIMIT 1
    ) up ON true
)
INSERT INTO expansion_metrics AS x (
    workspace_id, subscription_id, opportunity_type, status, current_plan_code, suggested_plan_code,
    expected_mrr_delta_cents, score, details, detected_at, last_seen_at)
SELECT workspace_id, subscription_id, CAST(opportunity_type AS expansion_opportunity_type), 'open', plan_code,
       suggested_plan_code, mrr_delta, round(score::numeric, 2)::float, details, :now, :now
FROM suggested
WHERE NOT EXISTS (
    SELECT 1 FROM expansion_metrics r
    WHERE r.subscription_id = suggested.subscription_id
      AND r.opportunity_type = CAST(suggested.opportunity_type AS expansion_opportunity_type)
      AND r.status IN ('dismissed', 'converted')
      AND r.current_plan_code = suggested.plan_code
      AND r.resolved_at > CAST(:now AS timestamptz) - make_interval(days => :cooldown_days)
)
ORDER BY subscription_id, opportunity_type
ON CONFLICT (subscription_id, opportunity_type) WHERE {UNRESOLVED_OPPORTUNITY_SQL}
DO UPDATE SET suggested_plan_code = excluded.suggested_plan_code,
              expected_mrr_delta_cents = excluded.expected_mrr_delta_cents,
              score = excluded.score, details = excluded.details, last_seen_at = excluded.last_seen_at
RETURNING (xmax = 0) AS inserted
"""
)

EXPIRE_SQL = text(
    """
UPDATE expansion_metrics SET status = 'expired', resolved_at = :now
WHERE status = 'open' AND last_seen_at < :stale_before
"""
)


def detect_expansion(session: Session, now: datetime) -> dict[str, Any]:
    txn.utc(session)
    txn.serialise(session, "detect_expansion")
    rows = session.execute(
        DETECT_SQL,
        {
            "now": now,
            "threshold": THRESHOLD_SHARE,
            "min_elapsed": MIN_ELAPSED_DAYS,
            "gate_days": FEATURE_GATE_DAYS,
            "low_tier_rank": LOW_TIER_MAX_RANK,
            "fresh_since": (now - timedelta(days=RETENTION_FRESH_DAYS)).date(),
            "engaged_stickiness": ENGAGED_STICKINESS,
            "engaged_max_risk": ENGAGED_MAX_RISK,
            "cooldown_days": RESOLVED_COOLDOWN_DAYS,
        },
    ).all()
    created = sum(1 for r in rows if r.inserted)
    expired = session.execute(EXPIRE_SQL, {"now": now, "stale_before": now - timedelta(days=STALE_DAYS)}).rowcount
    return {"opportunities_created": created, "opportunities_refreshed": len(rows) - created, "expired": expired or 0}


_TRANSITIONS = {
    "present": ("presented", ("open",)),
    "convert": ("converted", ("open", "presented")),
    "dismiss": ("dismissed", ("open", "presented")),
}


def move_opportunity(session: Session, opportunity_id: int, action: str, now: datetime) -> str | None:
    """The main app's status moves (open -> presented -> converted or dismissed); None if not allowed from here."""
    target, allowed_from = _TRANSITIONS[action]
    resolved = "resolved_at" if target != "presented" else "presented_at"
    row = session.execute(
        text(
            f"UPDATE expansion_metrics SET status = CAST(:target AS expansion_status), {resolved} = :now "
            "WHERE id = :id AND status::text = ANY(:allowed) RETURNING status::text"
        ),
        {"target": target, "now": now, "id": opportunity_id, "allowed": list(allowed_from)},
    ).first()
    return row[0] if row else None
