"""Quota status per subscription and metric (ok / warning at 80% / exceeded at 100%), transitions recorded once.

The status lives on the current period's usage_metrics row; a transition writes one quota_events row (unique on
subscription, metric, period and target status). Runs are serialised by a transaction-level advisory lock, so two
concurrent runs cannot both see the old status and both record the same transition.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from models.core import QuotaStatus
from tasks.billing.aggregation import WATERMARK_NAME

# pg_advisory_xact_lock key for check_quotas (any fixed bigint no other area uses for a transaction lock).
CHECK_QUOTAS_LOCK = 0x0B11_0004

WARNING_PERCENT = 80


def quota_status(quantity: int, limit: int | None) -> QuotaStatus:
    """The status a usage has against a limit (None: unlimited). Mirrors the SQL below."""
    if limit is None:
        return QuotaStatus.OK
    if quantity >= limit and (limit > 0 or quantity > 0):
        return QuotaStatus.EXCEEDED
    if quantity * 100 >= limit * WARNING_PERCENT and quantity > 0:
        return QuotaStatus.WARNING
    return QuotaStatus.OK


CHECK_QUOTAS = text(
    """
    WITH wm AS (
        SELECT last_txid, last_event_id, coalesce(pending_horizon, last_txid) AS pending_horizon
        FROM usage_watermarks WHERE name = :name
    ),
    bounded AS MATERIALIZED (
        SELECT s.id AS subscription_id, s.workspace_id, p.limits,
               CASE WHEN :now < s.current_period_end THEN NULL ELSE billing_period_for(s.id, :now) END AS bp,
               s.current_period_start, s.current_period_end
        FROM subscriptions s JOIN plans p ON p.code = s.plan_code
        WHERE s.status IN ('trialing', 'active', 'past_due')
          AND EXISTS (SELECT 1 FROM jsonb_each_text(p.limits) l WHERE l.value IS NOT NULL)
    ),
    cur AS MATERIALIZED (
        SELECT subscription_id, workspace_id, limits,
               coalesce((bp).period_start, current_period_start) AS period_start,
               coalesce((bp).period_end, current_period_end) AS period_end
        FROM bounded
    ),
    tail AS (
        SELECT e.subscription_id, e.metric, sum(e.quantity) AS quantity
        FROM usage_events e CROSS JOIN wm
        JOIN cur c ON c.subscription_id = e.subscription_id
                  AND e.occurred_at >= c.period_start AND e.occurred_at < c.period_end
        WHERE e.txid >= wm.last_txid AND (e.txid >= wm.pending_horizon OR e.id > wm.last_event_id)
        GROUP BY 1, 2
    ),
    usage AS (
        SELECT c.subscription_id, c.workspace_id, c.period_start, c.period_end, m.metric,
               (c.limits ->> m.metric::text)::bigint AS limit_quantity,
               coalesce(um.quantity, 0) + coalesce(t.quantity, 0) AS quantity,
               um.id AS metrics_id, coalesce(um.quota_status, 'ok') AS old_status
        FROM cur c
        CROSS JOIN unnest(enum_range(NULL::usage_metric)) AS m(metric)
        LEFT JOIN usage_metrics um ON um.subscription_id = c.subscription_id AND um.metric = m.metric
                                  AND um.period_start = c.period_start
        LEFT JOIN tail t ON t.subscription_id = c.subscription_id AND t.metric = m.metric
        WHERE (c.limits ->> m.metric::text) IS NOT NULL
    ),
    computed AS MATERIALIZED (
        SELECT u.*,
               (CASE WHEN u.quantity >= u.limit_quantity AND (u.limit_quantity > 0 OR u.quantity > 0) THEN 'exceeded'
                     WHEN u.quantity * 100 >= u.limit_quantity * :warning_percent AND u.quantity > 0 THEN 'warning'
                     ELSE 'ok' END)::quota_status AS new_status
        FROM usage u
    ),
    created AS (
        -- Usage still only in the tail has no usage_metrics row yet: create it with its status (aggregation
        -- adds the quantity later). A row created meanwhile by aggregation wins; the next run records it.
        INSERT INTO usage_metrics (workspace_id, subscription_id, metric, period_start, period_end, quantity,
                                   quota_status, updated_at)
        SELECT workspace_id, subscription_id, metric, period_start, period_end, 0, new_status, :now
        FROM computed WHERE metrics_id IS NULL AND new_status <> 'ok'
        ON CONFLICT (subscription_id, metric, period_start) DO NOTHING
        RETURNING subscription_id, metric, period_start
    ),
    changed AS (
        UPDATE usage_metrics um SET quota_status = c.new_status
        FROM computed c
        WHERE um.id = c.metrics_id AND um.quota_status = c.old_status AND c.old_status <> c.new_status
        RETURNING um.subscription_id, um.metric, um.period_start
    ),
    transitions AS (
        SELECT c.workspace_id, c.subscription_id, c.metric, c.period_start, c.old_status, c.new_status,
               c.quantity, c.limit_quantity
        FROM computed c
        JOIN (SELECT * FROM created UNION ALL SELECT * FROM changed) x
          ON x.subscription_id = c.subscription_id AND x.metric = c.metric AND x.period_start = c.period_start
    ),
    recorded AS (
        INSERT INTO quota_events (workspace_id, subscription_id, metric, period_start, from_status, to_status,
                                  quantity, "limit", occurred_at)
        SELECT workspace_id, subscription_id, metric, period_start, old_status, new_status, quantity,
               limit_quantity, :now
        FROM transitions
        ON CONFLICT (subscription_id, metric, period_start, to_status) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM computed) AS checked,
           (SELECT count(*) FROM transitions) AS transitions,
           (SELECT count(*) FROM recorded) AS recorded
    """
)


def check_quotas(session: Session, *, now: datetime | None = None) -> dict[str, int]:
    """Set every live subscription's metric status for its current period; record each transition once."""
    now = now or datetime.now(UTC)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHECK_QUOTAS_LOCK})
    row = session.execute(CHECK_QUOTAS, {"name": WATERMARK_NAME, "now": now, "warning_percent": WARNING_PERCENT}).one()
    return {"checked": int(row.checked), "transitions": int(row.transitions), "recorded": int(row.recorded)}
