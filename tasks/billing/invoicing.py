"""Invoices: one per (subscription, period), drafted when the period ends, finalised with a gapless number.

generate_invoice locks the subscription row, inserts the invoice with ON CONFLICT DO NOTHING on the unique
(subscription_id, period_start), writes its lines and rolls the subscription to its next period, all in the
caller's transaction: a redelivery, a second worker or a second beat finds the invoice (or the rolled period)
and changes nothing.

An invoice stays draft for the grace period (late usage still counts); finalize_invoices then recomputes its
usage lines, gives it the next number of the year from a counter row (locked by the increment until commit, so a
rolled-back finalisation leaves no gap) and makes it open. A trigger (migration 0002_billing) refuses any later
change to a finalised invoice's amounts, number or lines.

Late usage for a period already finalised is billed once as an adjustment on a later invoice: the difference
between the overage the period's usage now costs and what all non-void invoices already billed for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.orm import Session

from models.billing import InvoiceLineKind
from models.core import Metric, PlanTier
from tasks.billing.aggregation import WATERMARK_NAME, period_usage
from workers.errors import BadInput
from workers.settings import get_settings

BILLABLE_STATUSES = ("active", "past_due")


@dataclass(frozen=True)
class PlanPrice:
    code: PlanTier
    name: str
    price_cents: int
    currency: str
    limits: dict[str, int | None]
    # As stored in plans.overage_unit_cents (a falsy price means "not priced"); read through unit_cents().
    overage_unit_cents: dict[str, Any]

    def unit_cents(self, metric: Metric) -> int:
        """The metric's overage price, which must be whole cents: int(0.5) would bill the overage at 0."""
        price = self.overage_unit_cents[metric.value]
        whole = isinstance(price, int) or (isinstance(price, float) and price.is_integer())
        if isinstance(price, bool) or not whole or price < 0:
            raise ValueError(
                f"plan {self.code.value}: overage price of {metric.value} must be whole cents, got {price!r}"
            )
        return int(price)


@dataclass
class LineDraft:
    kind: InvoiceLineKind
    description: str
    quantity: int
    unit_amount_cents: int
    amount_cents: int
    plan_code: PlanTier | None = None
    metric: Metric | None = None
    usage_period_start: datetime | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None


PLANS_JSON = """
    (SELECT json_agg(json_build_object('code', code, 'name', name, 'price_cents', price_cents, 'currency', currency,
                                       'limits', limits, 'overage_unit_cents', overage_unit_cents))
     FROM plans)
"""


def plans_from_json(rows: list[dict[str, Any]]) -> dict[PlanTier, PlanPrice]:
    return {
        PlanTier(r["code"]): PlanPrice(
            code=PlanTier(r["code"]),
            name=r["name"],
            price_cents=int(r["price_cents"]),
            currency=r["currency"],
            limits=dict(r["limits"] or {}),
            overage_unit_cents={k: v for k, v in (r["overage_unit_cents"] or {}).items() if v},
        )
        for r in rows
    }


def load_plans(session: Session) -> dict[PlanTier, PlanPrice]:
    return plans_from_json(session.execute(text(f"SELECT {PLANS_JSON}")).scalar_one() or [])


def prorate(amount_cents: int, seconds: int, period_seconds: int) -> int:
    """amount * seconds / period_seconds, rounded half up, in integers (no float ever touches money)."""
    return (2 * amount_cents * seconds + period_seconds) // (2 * period_seconds)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _seconds(start: datetime, end: datetime) -> int:
    """Whole seconds from start to end, each bound counted at the second it falls in: segments cut at any instants
    then add up exactly to their span (flooring each difference instead can lose a second per cut)."""
    second = timedelta(seconds=1)
    return (end - _EPOCH) // second - (start - _EPOCH) // second


@dataclass(frozen=True)
class PlanChange:
    from_plan: PlanTier
    to_plan: PlanTier
    effective_at: datetime


def plan_lines(
    changes: list[PlanChange],
    current_plan: PlanTier,
    period_start: datetime,
    period_end: datetime,
    plans: dict[PlanTier, PlanPrice],
) -> tuple[list[LineDraft], PlanTier]:
    """The plan fee, or prorated segments when the plan changed inside the period; and the plan at its end.

    `changes` are the subscription's plan changes after `period_start`, oldest first.
    """
    # The plan at the start is what the first later change moved away from (changes after the period's end
    # also count: the roll may run after a change was made).
    plan = changes[0].from_plan if changes else current_plan
    inside = [c for c in changes if c.effective_at < period_end]
    plan_at_end = inside[-1].to_plan if inside else plan
    period_seconds = _seconds(period_start, period_end)
    if not inside or period_seconds == 0:
        price = plans[plan]
        return [
            LineDraft(
                kind=InvoiceLineKind.PLAN_FEE,
                description=f"{price.name} plan {period_start:%Y-%m-%d} to {period_end:%Y-%m-%d}",
                quantity=1,
                unit_amount_cents=price.price_cents,
                amount_cents=price.price_cents,
                plan_code=plan,
                starts_at=period_start,
                ends_at=period_end,
            )
        ], plan_at_end
    lines = []
    start = period_start
    for change in [*inside, None]:
        end = change.effective_at if change is not None else period_end
        seconds = _seconds(start, end)
        price = plans[plan]
        lines.append(
            LineDraft(
                kind=InvoiceLineKind.PRORATION,
                description=(
                    f"{price.name} plan {start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC, "
                    f"{seconds} of {period_seconds} seconds"
                ),
                quantity=seconds,
                unit_amount_cents=price.price_cents,
                amount_cents=prorate(price.price_cents, seconds, period_seconds),
                plan_code=plan,
                starts_at=start,
                ends_at=end,
            )
        )
        if change is not None:
            plan = change.to_plan
            start = end
    return lines, plan_at_end


def _overage(usage: int, plan: PlanPrice, metric: Metric) -> int:
    limit = plan.limits.get(metric.value)
    if limit is None or metric.value not in plan.overage_unit_cents:
        return 0
    return max(0, usage - int(limit))


# Every finalised earlier period of a priced plan, with its usage now (aggregates plus the tail past the watermark)
# and what non-void invoices other than :exclude already billed for it, per metric: one statement whatever the
# subscription's age (one snapshot too, so usage and billed quantities are read at the same instant).
EARLIER_PERIODS_USAGE = text(
    """
    WITH wm AS (
        SELECT last_txid, last_event_id, coalesce(pending_horizon, last_txid) AS pending_horizon
        FROM usage_watermarks WHERE name = :watermark
    ), invoiced AS (
        SELECT period_start, period_end, plan_code FROM invoices
        WHERE subscription_id = :id AND period_start < :start AND status IN ('open', 'paid')
          AND plan_code::text = ANY(CAST(:priced AS text[]))
    ), used AS (
        SELECT inv.period_start, u.metric, sum(u.quantity)::bigint AS quantity
        FROM invoiced inv CROSS JOIN LATERAL (
            SELECT um.metric, um.quantity FROM usage_metrics um
            WHERE um.subscription_id = :id AND um.period_start = inv.period_start
            UNION ALL
            SELECT e.metric, e.quantity FROM usage_events e CROSS JOIN wm
            WHERE e.subscription_id = :id AND e.occurred_at >= inv.period_start AND e.occurred_at < inv.period_end
              AND e.txid >= wm.last_txid AND (e.txid >= wm.pending_horizon OR e.id > wm.last_event_id)
        ) u
        GROUP BY 1, 2
    ), billed AS (
        SELECT l.usage_period_start AS period_start, l.metric, sum(l.quantity)::bigint AS quantity
        FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
        WHERE l.subscription_id = :id AND l.usage_period_start < :start
          AND l.kind IN ('overage', 'late_usage_adjustment') AND i.status <> 'void'
          AND i.id IS DISTINCT FROM CAST(:exclude AS bigint)
        GROUP BY 1, 2
    )
    SELECT inv.period_start, inv.period_end, inv.plan_code::text AS plan_code, used.metric::text AS metric,
           used.quantity AS used, coalesce(billed.quantity, 0)::bigint AS billed
    FROM invoiced inv
    JOIN used ON used.period_start = inv.period_start
    LEFT JOIN billed ON billed.period_start = inv.period_start AND billed.metric = used.metric
    ORDER BY inv.period_start, used.metric
    """
)


def usage_lines(
    session: Session,
    subscription_id: int,
    plan: PlanPrice,
    period_start: datetime,
    period_end: datetime,
    plans: dict[PlanTier, PlanPrice],
    *,
    invoice_id: int | None = None,
) -> list[LineDraft]:
    """Overage for this period (where the plan prices it) and adjustments for late usage of finalised periods."""
    if not any(p.overage_unit_cents for p in plans.values()):
        return []
    lines: list[LineDraft] = []
    if plan.overage_unit_cents:
        usage = period_usage(session, subscription_id, period_start, period_end)
        for metric in Metric:
            over = _overage(usage[metric], plan, metric)
            if over:
                unit = plan.unit_cents(metric)
                lines.append(
                    LineDraft(
                        kind=InvoiceLineKind.OVERAGE,
                        description=f"{metric.value} over the {plan.name} limit of {plan.limits[metric.value]}",
                        quantity=over,
                        unit_amount_cents=unit,
                        amount_cents=over * unit,
                        plan_code=plan.code,
                        metric=metric,
                        usage_period_start=period_start,
                    )
                )
    priced = [code.value for code, p in plans.items() if p.overage_unit_cents]
    earlier = session.execute(
        EARLIER_PERIODS_USAGE,
        {
            "watermark": WATERMARK_NAME,
            "id": subscription_id,
            "start": period_start,
            "priced": priced,
            "exclude": invoice_id,
        },
    )
    for row in earlier:
        earlier_plan = plans[PlanTier(row.plan_code)]
        metric = Metric(row.metric)
        delta = _overage(int(row.used), earlier_plan, metric) - int(row.billed)
        if delta > 0:
            unit = earlier_plan.unit_cents(metric)
            lines.append(
                LineDraft(
                    kind=InvoiceLineKind.LATE_USAGE_ADJUSTMENT,
                    description=f"late {metric.value} for {row.period_start:%Y-%m-%d} to {row.period_end:%Y-%m-%d}",
                    quantity=delta,
                    unit_amount_cents=unit,
                    amount_cents=delta * unit,
                    plan_code=earlier_plan.code,
                    metric=metric,
                    usage_period_start=row.period_start,
                )
            )
    return lines


INSERT_LINE = text(
    """
    INSERT INTO invoice_lines (invoice_id, workspace_id, subscription_id, kind, description, plan_code, metric,
                               usage_period_start, starts_at, ends_at, quantity, unit_amount_cents, amount_cents)
    VALUES (:invoice_id, :workspace_id, :subscription_id, :kind, :description, :plan_code, :metric,
            :usage_period_start, :starts_at, :ends_at, :quantity, :unit_amount_cents, :amount_cents)
    """
)


def _insert_lines(
    session: Session, invoice_id: int, workspace_id: int, subscription_id: int, lines: list[LineDraft]
) -> None:
    if not lines:
        return
    session.execute(
        INSERT_LINE,
        [
            {
                "invoice_id": invoice_id,
                "workspace_id": workspace_id,
                "subscription_id": subscription_id,
                "kind": line.kind.value,
                "description": line.description[:200],
                "plan_code": line.plan_code.value if line.plan_code else None,
                "metric": line.metric.value if line.metric else None,
                "usage_period_start": line.usage_period_start,
                "starts_at": line.starts_at,
                "ends_at": line.ends_at,
                "quantity": line.quantity,
                "unit_amount_cents": line.unit_amount_cents,
                "amount_cents": line.amount_cents,
            }
            for line in lines
        ],
    )


def _lock_subscription(session: Session, subscription_id: int) -> Row[Any] | None:
    return session.execute(
        text("SELECT id FROM subscriptions WHERE id = :id FOR UPDATE"), {"id": subscription_id}
    ).one_or_none()


# One round trip: the subscription locked, the period's invoice if it exists, its plan changes since then, when a
# cancel was asked, and the plans (their prices as of this transaction).
LOCK_FOR_INVOICE = text(
    """
    SELECT s.workspace_id, s.plan_code::text AS plan_code, s.status::text AS status, s.current_period_start,
           s.current_period_end, s.cancel_at_period_end, i.id AS invoice_id, i.total_cents AS invoice_total,
           (SELECT coalesce(json_agg(json_build_array(h.from_plan_code, h.to_plan_code, h.effective_at)
                                     ORDER BY h.effective_at, h.id), '[]')
            FROM subscription_history_entries h
            WHERE h.subscription_id = s.id AND h.change = 'plan_changed' AND h.effective_at > :start) AS changes,
           (SELECT max(h.effective_at) FROM subscription_history_entries h
            WHERE h.subscription_id = s.id AND h.change = 'cancel_scheduled') AS cancel_scheduled_at,
           """
    + PLANS_JSON
    + """ AS plans
    FROM subscriptions s
    LEFT JOIN invoices i ON i.subscription_id = s.id AND i.period_start = :start
    WHERE s.id = :id
    FOR UPDATE OF s
    """
)

# One round trip: the invoice (ON CONFLICT on the unique (subscription_id, period_start)), its lines, and the
# subscription rolled to its next period; the lines and the roll only happen if the invoice row was inserted.
WRITE_INVOICE = text(
    """
    WITH invoice AS (
        INSERT INTO invoices (workspace_id, subscription_id, plan_code, period_start, period_end, status, currency,
                              subtotal_cents, total_cents, grace_until, created_at)
        VALUES (:ws, :id, :plan, :start, :end, 'draft', :currency, :subtotal, :subtotal, :grace_until, :now)
        ON CONFLICT (subscription_id, period_start) DO NOTHING
        RETURNING id, workspace_id, subscription_id
    ), lines AS (
        INSERT INTO invoice_lines (invoice_id, workspace_id, subscription_id, kind, description, plan_code, metric,
                                   usage_period_start, starts_at, ends_at, quantity, unit_amount_cents,
                                   amount_cents)
        SELECT invoice.id, invoice.workspace_id, invoice.subscription_id, l.kind::invoice_line_kind, l.description,
               l.plan_code::plan_tier, l.metric::usage_metric, l.usage_period_start, l.starts_at, l.ends_at,
               l.quantity, l.unit_amount_cents, l.amount_cents
        FROM invoice CROSS JOIN unnest(
            CAST(:kinds AS text[]), CAST(:descriptions AS text[]), CAST(:plan_codes AS text[]),
            CAST(:metrics AS text[]), CAST(:usage_period_starts AS timestamptz[]), CAST(:starts_ats AS timestamptz[]),
            CAST(:ends_ats AS timestamptz[]), CAST(:quantities AS bigint[]), CAST(:unit_amounts AS bigint[]),
            CAST(:amounts AS bigint[])
        ) AS l(kind, description, plan_code, metric, usage_period_start, starts_at, ends_at, quantity,
               unit_amount_cents, amount_cents)
    ), rolled AS (
        UPDATE subscriptions s SET
            current_period_start = CASE WHEN :cancel THEN s.current_period_start ELSE s.current_period_end END,
            current_period_end = CASE WHEN :cancel THEN s.current_period_end
                                      ELSE billing_period_end(s.current_period_end, s.billing_anchor_day, w.timezone)
                                 END,
            status = CASE WHEN :cancel THEN 'cancelled' ELSE s.status END,
            ended_at = CASE WHEN :cancel THEN s.current_period_end ELSE s.ended_at END,
            updated_at = :now
        FROM workspaces w, invoice
        WHERE w.id = s.workspace_id AND s.id = invoice.subscription_id
        RETURNING s.current_period_start, s.current_period_end
    )
    SELECT invoice.id, rolled.current_period_start, rolled.current_period_end
    FROM invoice LEFT JOIN rolled ON true
    """
)


def _line_arrays(lines: list[LineDraft]) -> dict[str, list[Any]]:
    return {
        "kinds": [line.kind.value for line in lines],
        "descriptions": [line.description[:200] for line in lines],
        "plan_codes": [line.plan_code.value if line.plan_code else None for line in lines],
        "metrics": [line.metric.value if line.metric else None for line in lines],
        "usage_period_starts": [line.usage_period_start for line in lines],
        "starts_ats": [line.starts_at for line in lines],
        "ends_ats": [line.ends_at for line in lines],
        "quantities": [line.quantity for line in lines],
        "unit_amounts": [line.unit_amount_cents for line in lines],
        "amounts": [line.amount_cents for line in lines],
    }


def generate_invoice(
    session: Session, subscription_id: int, period_start: datetime, *, now: datetime | None = None
) -> dict[str, Any]:
    """Draft the invoice of a subscription's ended period and roll it to the next period (or end it)."""
    now = now or datetime.now(UTC)
    sub = session.execute(LOCK_FOR_INVOICE, {"id": subscription_id, "start": period_start}).one_or_none()
    if sub is None:
        raise BadInput(f"subscription {subscription_id} does not exist")
    if sub.invoice_id is not None:
        return {"invoice_id": sub.invoice_id, "created": False, "total_cents": sub.invoice_total}
    if sub.current_period_start != period_start:
        return {"invoice_id": None, "created": False, "skipped": "not the subscription's current period"}
    if sub.status not in BILLABLE_STATUSES:
        return {"invoice_id": None, "created": False, "skipped": f"subscription is {sub.status}"}
    if sub.current_period_end > now:
        return {"invoice_id": None, "created": False, "skipped": "the period has not ended"}

    period_end = sub.current_period_end
    # Cancel-at-period-end means the period the customer was in when asking. Asked after this period ended (the
    # roll had not run yet), it is the next one: roll on with the flag kept, and end with the next invoice. A flag
    # set without a history row (older data) applies now.
    cancel = bool(sub.cancel_at_period_end) and (
        sub.cancel_scheduled_at is None or sub.cancel_scheduled_at < period_end
    )
    plans = plans_from_json(sub.plans)
    changes = [
        PlanChange(PlanTier(from_plan), PlanTier(to_plan), datetime.fromisoformat(at))
        for from_plan, to_plan, at in sub.changes
    ]
    lines, plan_at_end = plan_lines(changes, PlanTier(sub.plan_code), period_start, period_end, plans)
    plan = plans[plan_at_end]
    lines += usage_lines(session, subscription_id, plan, period_start, period_end, plans)
    subtotal = sum(line.amount_cents for line in lines)
    written = session.execute(
        WRITE_INVOICE,
        {
            "ws": sub.workspace_id,
            "id": subscription_id,
            "plan": plan_at_end.value,
            "start": period_start,
            "end": period_end,
            "currency": plan.currency,
            "subtotal": subtotal,
            "grace_until": period_end + timedelta(seconds=get_settings().billing_invoice_grace_seconds),
            "now": now,
            "cancel": cancel,
            **_line_arrays(lines),
        },
    ).one_or_none()
    if written is None:
        # Only reachable if something wrote the invoice without taking the subscription lock.
        return {"invoice_id": None, "created": False, "skipped": "invoice already exists"}
    if cancel:
        session.execute(
            text(
                """
                INSERT INTO subscription_history_entries (workspace_id, subscription_id, change, from_plan_code,
                    to_plan_code, from_status, to_status, effective_at)
                VALUES (:ws, :id, 'cancelled', :plan, :plan, :status, 'cancelled', :at)
                """
            ),
            {
                "ws": sub.workspace_id,
                "id": subscription_id,
                "plan": sub.plan_code,
                "status": sub.status,
                "at": period_end,
            },
        )
        return {"invoice_id": written.id, "created": True, "total_cents": subtotal, "next_period_start": None}
    return {
        "invoice_id": written.id,
        "created": True,
        "total_cents": subtotal,
        "next_period_start": written.current_period_start.isoformat(),
        # The subscription is still behind (e.g. beat was down for a while): the caller may chain the next one.
        "next_period_due": written.current_period_end <= now,
    }


def due_subscriptions(
    session: Session, *, now: datetime, after_id: int = 0, limit: int = 500
) -> list[tuple[int, datetime]]:
    """Subscriptions whose current period has ended, by id after a cursor: the fan-out's bounded chunk."""
    rows = session.execute(
        text(
            """
            SELECT id, current_period_start FROM subscriptions
            WHERE current_period_end <= :now AND status IN ('active', 'past_due') AND id > :after
            ORDER BY id LIMIT :limit
            """
        ),
        {"now": now, "after": after_id, "limit": limit},
    )
    return [(int(r.id), r.current_period_start) for r in rows]


def invoice_number(year: int, sequence: int) -> str:
    return f"INV-{year}-{sequence:06d}"


def finalize_invoices(session: Session, *, now: datetime | None = None, limit: int = 500) -> dict[str, Any]:
    """Finalise drafts whose grace period is over: refresh usage lines, number them, make them open."""
    now = now or datetime.now(UTC)
    drafts = session.execute(
        text(
            """
            SELECT id, workspace_id, subscription_id, plan_code::text AS plan_code, period_start, period_end
            FROM invoices WHERE status = 'draft' AND grace_until <= :now
            ORDER BY grace_until, id LIMIT :limit
            FOR UPDATE SKIP LOCKED
            """
        ),
        {"now": now, "limit": limit},
    ).all()
    if not drafts:
        return {"finalized": 0, "numbers": []}

    plans = load_plans(session)
    if any(p.overage_unit_cents for p in plans.values()):
        # Two drafts of one subscription finalised at once could both bill the same late usage: serialise per
        # subscription (in id order, so concurrent finalisers cannot deadlock), then recompute the usage lines.
        for subscription_id in sorted({d.subscription_id for d in drafts}):
            _lock_subscription(session, subscription_id)
        for draft in drafts:
            session.execute(
                text(
                    "DELETE FROM invoice_lines WHERE invoice_id = :id AND kind IN ('overage', 'late_usage_adjustment')"
                ),
                {"id": draft.id},
            )
            lines = usage_lines(
                session,
                draft.subscription_id,
                plans[PlanTier(draft.plan_code)],
                draft.period_start,
                draft.period_end,
                plans,
                invoice_id=draft.id,
            )
            _insert_lines(session, draft.id, draft.workspace_id, draft.subscription_id, lines)
        session.execute(
            text(
                """
                UPDATE invoices i SET subtotal_cents = t.amount, total_cents = t.amount
                FROM (SELECT invoice_id, sum(amount_cents)::bigint AS amount FROM invoice_lines
                      WHERE invoice_id = ANY(:ids) GROUP BY invoice_id) t
                WHERE i.id = t.invoice_id
                """
            ),
            {"ids": [d.id for d in drafts]},
        )

    year = now.astimezone(UTC).year
    # The increment locks the year's row until this transaction ends: concurrent finalisers queue here, and a
    # rollback returns the numbers, so the sequence has no gaps.
    last = session.execute(
        text(
            """
            INSERT INTO invoice_number_counters (year, last_number) VALUES (:year, :count)
            ON CONFLICT (year) DO UPDATE SET last_number = invoice_number_counters.last_number + :count
            RETURNING last_number
            """
        ),
        {"year": year, "count": len(drafts)},
    ).scalar_one()
    first = int(last) - len(drafts) + 1
    numbers = [invoice_number(year, first + offset) for offset in range(len(drafts))]
    session.execute(
        text(
            """
            UPDATE invoices i SET number = v.number, status = 'open', finalized_at = :now
            FROM unnest(CAST(:ids AS bigint[]), CAST(:numbers AS text[])) AS v(id, number)
            WHERE i.id = v.id
            """
        ),
        {"ids": [d.id for d in drafts], "numbers": numbers, "now": now},
    )
    return {"finalized": len(drafts), "numbers": [numbers[0], numbers[-1]]}
