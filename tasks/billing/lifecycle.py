"""Subscription lifecycle: creation with anniversary periods, trials, plan changes and cancellation.

Periods come from the migration's SQL functions (billing_period_start / billing_period_end), the one definition
aggregation and the invoice roll also use: local midnight of the anchor day in the workspace's zone, clamped at
month ends, half-open. Every change writes a subscription_history_entries row; a plan change inside a period is prorated
on that period's invoice (tasks/billing/invoicing.py reads the history).

Invariant: a trialing subscription's current period ends when its trial ends (create_subscription sets it so);
the paid period starts there, anchored on that local day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.orm import Session

from models.core import PlanTier, SubscriptionStatus
from workers.errors import BadInput


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime


def period_containing(session: Session, at: datetime, anchor_day: int, timezone: str) -> Period:
    row = session.execute(
        text(
            "SELECT p.s AS start, billing_period_end(p.s, :anchor, :tz) AS end "
            "FROM (SELECT billing_period_start(:at, :anchor, :tz) AS s) p"
        ),
        {"at": at, "anchor": anchor_day, "tz": timezone},
    ).one()
    return Period(row.start, row.end)


def local_day(session: Session, at: datetime, timezone: str) -> int:
    day = session.execute(text("SELECT extract(day from :at AT TIME ZONE :tz)::int"), {"at": at, "tz": timezone})
    return int(day.scalar_one())


def create_subscription(
    session: Session,
    workspace_id: int,
    plan_code: PlanTier | str,
    *,
    now: datetime | None = None,
    trial_days: int | None = None,
    has_payment_method: bool = True,
) -> int:
    """A subscription anchored on today's local day in the workspace's zone; with `trial_days`, trialing first."""
    now = now or datetime.now(UTC)
    timezone = session.execute(
        text("SELECT timezone FROM workspaces WHERE id = :id"), {"id": workspace_id}
    ).scalar_one_or_none()
    if timezone is None:
        raise BadInput(f"workspace {workspace_id} does not exist")
    anchor = local_day(session, now, timezone)
    period = period_containing(session, now, anchor, timezone)
    status = SubscriptionStatus.ACTIVE
    trial_ends_at = None
    if trial_days:
        status = SubscriptionStatus.TRIALING
        trial_ends_at = now + timedelta(days=trial_days)
        period = Period(period.start, trial_ends_at)
    return int(
        session.execute(
            text(
                """
                INSERT INTO subscriptions (workspace_id, plan_code, status, started_at, billing_anchor_day,
                    current_period_start, current_period_end, trial_ends_at, trial_plan_code, has_payment_method)
                VALUES (:ws, :plan, :status, :now, :anchor, :start, :end, :trial_ends_at,
                        CASE WHEN :trial THEN CAST(:plan AS plan_tier) END, :has_pm)
                RETURNING id
                """
            ),
            {
                "ws": workspace_id,
                "plan": PlanTier(plan_code).value,
                "status": status.value,
                "now": now,
                "anchor": anchor,
                "start": period.start,
                "end": period.end,
                "trial_ends_at": trial_ends_at,
                "trial": trial_ends_at is not None,
                "has_pm": has_payment_method,
            },
        ).scalar_one()
    )


def _locked(session: Session, subscription_id: int, now: datetime) -> Row[Any]:
    """The subscription, locked, with an ended trial settled first.

    The trial's outcome is effective at its end, whenever process_trials gets to it (hourly): a change made after
    that instant must come after it in the history, or the invoice would prorate from the wrong plan (a trial that
    falls back to Free billed as the trialled plan) and a cancel would end the trial it was asked after.
    """
    query = text("SELECT * FROM subscriptions WHERE id = :id FOR UPDATE")
    row = session.execute(query, {"id": subscription_id}).one_or_none()
    if row is None:
        raise BadInput(f"subscription {subscription_id} does not exist")
    if row.status == SubscriptionStatus.TRIALING.value and row.trial_ends_at is not None and row.trial_ends_at <= now:
        process_trials(session, now=now, subscription_id=subscription_id)
        row = session.execute(query, {"id": subscription_id}).one()
    return row


def change_plan(
    session: Session, subscription_id: int, to_plan: PlanTier | str, *, now: datetime | None = None
) -> bool:
    """Upgrade or downgrade now; the period's invoice prorates to the second. False when nothing changed."""
    now = now or datetime.now(UTC)
    to_plan = PlanTier(to_plan)
    sub = _locked(session, subscription_id, now)
    if sub.status == SubscriptionStatus.CANCELLED.value:
        raise BadInput(f"subscription {subscription_id} is cancelled")
    if sub.plan_code == to_plan.value:
        return False
    session.execute(
        text(
            """
            UPDATE subscriptions SET plan_code = :plan, updated_at = :now,
                trial_plan_code = CASE WHEN status = 'trialing' THEN CAST(:plan AS plan_tier) ELSE trial_plan_code END
            WHERE id = :id
            """
        ),
        {"plan": to_plan.value, "now": now, "id": subscription_id},
    )
    _record(session, sub, "plan_changed", sub.plan_code, to_plan.value, sub.status, sub.status, now)
    return True


def schedule_cancel(session: Session, subscription_id: int, *, now: datetime | None = None) -> bool:
    """Cancel at the end of the current period (the final invoice is still issued). False if already scheduled."""
    now = now or datetime.now(UTC)
    sub = _locked(session, subscription_id, now)
    if sub.cancel_at_period_end or sub.status == SubscriptionStatus.CANCELLED.value:
        return False
    session.execute(
        text("UPDATE subscriptions SET cancel_at_period_end = true, updated_at = :now WHERE id = :id"),
        {"now": now, "id": subscription_id},
    )
    _record(session, sub, "cancel_scheduled", sub.plan_code, sub.plan_code, sub.status, sub.status, now)
    return True


def _record(
    session: Session,
    sub: Row[Any],
    change: str,
    from_plan: str | None,
    to_plan: str | None,
    from_status: str | None,
    to_status: str | None,
    effective_at: datetime,
) -> None:
    session.execute(
        text(
            """
            INSERT INTO subscription_history_entries (workspace_id, subscription_id, change, from_plan_code,
                                                      to_plan_code, from_status, to_status, effective_at)
            VALUES (:ws, :id, :change, :from_plan, :to_plan, :from_status, :to_status, :at)
            """
        ),
        {
            "ws": sub.workspace_id,
            "id": sub.id,
            "change": change,
            "from_plan": from_plan,
            "to_plan": to_plan,
            "from_status": from_status,
            "to_status": to_status,
            "at": effective_at,
        },
    )


# Set-based: every trial that has ended, in one statement. SKIP LOCKED lets two runs share the work without
# waiting; the status check in the WHERE clause makes a redelivered run a no-op.
PROCESS_TRIALS = text(
    """
    WITH due AS (
        SELECT s.id, s.workspace_id, s.plan_code, s.trial_plan_code, s.has_payment_method, s.cancel_at_period_end,
               s.trial_ends_at, w.timezone
        FROM subscriptions s JOIN workspaces w ON w.id = s.workspace_id
        WHERE s.status = 'trialing' AND s.trial_ends_at <= :now
          AND (CAST(:subscription_id AS bigint) IS NULL OR s.id = CAST(:subscription_id AS bigint))
        ORDER BY s.trial_ends_at, s.id
        LIMIT :limit
        FOR UPDATE OF s SKIP LOCKED
    ), decided AS (
        SELECT d.*,
               (CASE WHEN d.cancel_at_period_end THEN 'cancelled' ELSE 'active' END)::subscription_status AS to_status,
               (CASE WHEN d.cancel_at_period_end THEN d.plan_code
                     WHEN d.has_payment_method THEN coalesce(d.trial_plan_code, d.plan_code)
                     ELSE 'free' END)::plan_tier AS to_plan,
               (CASE WHEN d.cancel_at_period_end THEN 'cancelled'
                     WHEN d.has_payment_method THEN 'trial_converted'
                     ELSE 'trial_ended_on_free' END)::subscription_change AS change,
               extract(day from d.trial_ends_at AT TIME ZONE d.timezone)::int AS anchor
        FROM due d
    ), updated AS (
        UPDATE subscriptions s SET
            status = x.to_status,
            plan_code = x.to_plan,
            billing_anchor_day = CASE WHEN x.cancel_at_period_end THEN s.billing_anchor_day ELSE x.anchor END,
            current_period_start = CASE WHEN x.cancel_at_period_end THEN s.current_period_start
                                        ELSE x.trial_ends_at END,
            current_period_end = CASE WHEN x.cancel_at_period_end THEN s.current_period_end
                                      ELSE billing_period_end(x.trial_ends_at, x.anchor, x.timezone) END,
            ended_at = CASE WHEN x.cancel_at_period_end THEN x.trial_ends_at END,
            updated_at = :now
        FROM decided x
        WHERE s.id = x.id
        RETURNING s.id
    )
    INSERT INTO subscription_history_entries (workspace_id, subscription_id, change, from_plan_code, to_plan_code,
                                      from_status, to_status, effective_at)
    SELECT x.workspace_id, x.id, x.change, x.plan_code, x.to_plan, 'trialing', x.to_status, x.trial_ends_at
    FROM decided x JOIN updated u ON u.id = x.id
    RETURNING change::text
    """
)


def process_trials(
    session: Session, *, now: datetime | None = None, limit: int = 1000, subscription_id: int | None = None
) -> dict[str, int]:
    """Convert ended trials: to the trialled plan with a payment method, to Free without, or cancel.

    With `subscription_id`, only that subscription's trial (a lifecycle change settles it first).
    """
    now = now or datetime.now(UTC)
    params = {"now": now, "limit": limit, "subscription_id": subscription_id}
    changes = list(session.execute(PROCESS_TRIALS, params).scalars())
    counts = {change: changes.count(change) for change in ("trial_converted", "trial_ended_on_free", "cancelled")}
    return {**counts, "processed": len(changes)}
