"""billing: invoices, invoice lines, subscription history, invoice number counters, usage watermarks, period functions

Revision ID: 0002_billing
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_billing"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INVOICE_STATUS = ("draft", "open", "paid", "void")
INVOICE_LINE_KIND = ("plan_fee", "proration", "overage", "late_usage_adjustment")
SUBSCRIPTION_CHANGE = ("trial_converted", "trial_ended_on_free", "plan_changed", "cancel_scheduled", "cancelled")


def _enum(name: str, values: Sequence[str] = ()) -> postgresql.ENUM:
    # Types are created (or, for 0001's, already exist) up front; create_table must not create them again.
    return postgresql.ENUM(*values, name=name, create_type=False)


# Billing periods as SQL, the one definition both aggregation (set-based, per event) and the invoice roll use.
# An anniversary is local midnight of the anchor day in the workspace's zone, the day clamped at the month's end
# (anchor 31: Jan 31, Feb 28 or 29, Mar 31). Periods are half-open [start, end).
PERIOD_FUNCTIONS = """
CREATE FUNCTION billing_anniversary(month_start date, anchor_day integer, tz text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT ((month_start + (least(anchor_day,
          extract(day from (month_start + interval '1 month' - interval '1 day'))::integer) - 1))::timestamp
          AT TIME ZONE tz)
$$;

-- The last anniversary at or before `at`.
CREATE FUNCTION billing_period_start(at timestamptz, anchor_day integer, tz text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN a.this_month <= at THEN a.this_month
              ELSE billing_anniversary((m.month_start - interval '1 month')::date, anchor_day, tz) END
  FROM (SELECT date_trunc('month', at AT TIME ZONE tz)::date AS month_start) m
  CROSS JOIN LATERAL (SELECT billing_anniversary(m.month_start, anchor_day, tz) AS this_month) a
$$;

-- The first anniversary strictly after `after`: the end of a period that starts at `after`.
CREATE FUNCTION billing_period_end(after timestamptz, anchor_day integer, tz text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN a.this_month > after THEN a.this_month
              ELSE billing_anniversary((m.month_start + interval '1 month')::date, anchor_day, tz) END
  FROM (SELECT date_trunc('month', after AT TIME ZONE tz)::date AS month_start) m
  CROSS JOIN LATERAL (SELECT billing_anniversary(m.month_start, anchor_day, tz) AS this_month) a
$$;

-- The period of one subscription an event at `at` belongs to. The current period first; after it, the periods the
-- invoice roll will produce (continuing the chain from the current end, so a roll that happens an hour late keys
-- usage exactly as the next invoice expects); before it, the invoiced period covering `at` (late usage lands in
-- the period its invoice billed); then the trial period (from local midnight of the start day to the trial's end,
-- as create_subscription set it: its conversion re-anchors the subscription, so the anniversary rule below no
-- longer describes it); else the anniversary period, cut at the current start.
CREATE TYPE billing_period AS (period_start timestamptz, period_end timestamptz);

CREATE FUNCTION billing_period_for(p_subscription_id bigint, p_at timestamptz) RETURNS billing_period
LANGUAGE plpgsql STABLE AS $$
DECLARE
  sub record;
  anchor integer;
  period_start timestamptz;
  period_end timestamptz;
BEGIN
  SELECT s.current_period_start AS cps, s.current_period_end AS cpe, s.billing_anchor_day, s.status, w.timezone,
         s.started_at, s.trial_ends_at
    INTO sub
    FROM subscriptions s JOIN workspaces w ON w.id = s.workspace_id
   WHERE s.id = p_subscription_id;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  IF p_at >= sub.cps AND p_at < sub.cpe THEN
    period_start := sub.cps;
    period_end := sub.cpe;
    RETURN ROW(period_start, period_end)::billing_period;
  END IF;
  IF p_at >= sub.cpe THEN
    -- A trial converts with its end's local day as the new anchor (tasks/billing/lifecycle.py).
    anchor := CASE WHEN sub.status = 'trialing'
                   THEN extract(day from sub.cpe AT TIME ZONE sub.timezone)::integer
                   ELSE sub.billing_anchor_day END;
    period_start := sub.cpe;
    LOOP
      period_end := billing_period_end(period_start, anchor, sub.timezone);
      EXIT WHEN p_at < period_end;
      period_start := period_end;
    END LOOP;
    RETURN ROW(period_start, period_end)::billing_period;
  END IF;
  SELECT i.period_start, i.period_end INTO period_start, period_end
    FROM invoices i
   WHERE i.subscription_id = p_subscription_id AND i.period_start <= p_at AND p_at < i.period_end;
  IF FOUND THEN
    RETURN ROW(period_start, period_end)::billing_period;
  END IF;
  IF sub.trial_ends_at IS NOT NULL AND p_at < sub.trial_ends_at THEN
    period_start := date_trunc('day', sub.started_at AT TIME ZONE sub.timezone) AT TIME ZONE sub.timezone;
    IF p_at >= period_start THEN
      RETURN ROW(period_start, sub.trial_ends_at)::billing_period;
    END IF;
  END IF;
  period_start := billing_period_start(p_at, sub.billing_anchor_day, sub.timezone);
  period_end := least(billing_period_end(period_start, sub.billing_anchor_day, sub.timezone), sub.cps);
  RETURN ROW(period_start, period_end)::billing_period;
END
$$;
"""

DROP_PERIOD_FUNCTIONS = """
DROP FUNCTION IF EXISTS billing_period_for(bigint, timestamptz);
DROP TYPE IF EXISTS billing_period;
DROP FUNCTION IF EXISTS billing_period_end(timestamptz, integer, text);
DROP FUNCTION IF EXISTS billing_period_start(timestamptz, integer, text);
DROP FUNCTION IF EXISTS billing_anniversary(date, integer, text);
"""

# A finalised invoice never changes: its amounts, period and number are frozen, and so are its lines. Only the
# status may move on (open -> paid or void).
IMMUTABILITY_TRIGGERS = """
CREATE FUNCTION billing_invoice_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status <> 'draft' AND (
       NEW.subtotal_cents IS DISTINCT FROM OLD.subtotal_cents OR NEW.total_cents IS DISTINCT FROM OLD.total_cents
    OR NEW.number IS DISTINCT FROM OLD.number OR NEW.period_start IS DISTINCT FROM OLD.period_start
    OR NEW.period_end IS DISTINCT FROM OLD.period_end OR NEW.currency IS DISTINCT FROM OLD.currency
    OR NEW.status = 'draft') THEN
    RAISE EXCEPTION 'invoice % is finalized and cannot change', OLD.id USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER invoices_frozen_after_finalize BEFORE UPDATE ON invoices
  FOR EACH ROW EXECUTE FUNCTION billing_invoice_frozen();

CREATE FUNCTION billing_invoice_line_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  invoice_status text;
BEGIN
  SELECT status::text INTO invoice_status FROM invoices WHERE id = COALESCE(NEW.invoice_id, OLD.invoice_id);
  IF invoice_status IS NOT NULL AND invoice_status <> 'draft' THEN
    RAISE EXCEPTION 'invoice % is finalized: its lines cannot change', COALESCE(NEW.invoice_id, OLD.invoice_id)
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN COALESCE(NEW, OLD);
END
$$;
CREATE TRIGGER invoice_lines_frozen_after_finalize BEFORE INSERT OR UPDATE OR DELETE ON invoice_lines
  FOR EACH ROW EXECUTE FUNCTION billing_invoice_line_frozen();
"""

DROP_IMMUTABILITY_TRIGGERS = """
DROP TRIGGER IF EXISTS invoice_lines_frozen_after_finalize ON invoice_lines;
DROP FUNCTION IF EXISTS billing_invoice_line_frozen();
DROP TRIGGER IF EXISTS invoices_frozen_after_finalize ON invoices;
DROP FUNCTION IF EXISTS billing_invoice_frozen();
"""


def upgrade() -> None:
    bind = op.get_bind()
    _enum("invoice_status", INVOICE_STATUS).create(bind, checkfirst=False)
    _enum("invoice_line_kind", INVOICE_LINE_KIND).create(bind, checkfirst=False)
    _enum("subscription_change", SUBSCRIPTION_CHANGE).create(bind, checkfirst=False)

    op.add_column(
        "usage_events",
        sa.Column(
            "txid",
            sa.BigInteger(),
            server_default=sa.text("(pg_current_xact_id())::text::bigint"),
            nullable=False,
        ),
    )
    op.create_index("ix_usage_events_txid_id", "usage_events", ["txid", "id"], unique=False)

    op.create_table(
        "invoices",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("plan_code", _enum("plan_tier"), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", _enum("invoice_status"), server_default="draft", nullable=False),
        sa.Column("number", sa.String(length=32), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("subtotal_cents", sa.BigInteger(), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("grace_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finalized_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("period_end > period_start", name=op.f("ck_invoices_period_not_empty")),
        sa.CheckConstraint("(status = 'draft') = (number IS NULL)", name=op.f("ck_invoices_number_iff_finalized")),
        sa.CheckConstraint("total_cents = subtotal_cents", name=op.f("ck_invoices_total_is_subtotal")),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_invoices_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_invoices_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_invoices_number")),
        sa.UniqueConstraint("subscription_id", "period_start", name=op.f("uq_invoices_subscription_id_period_start")),
    )
    op.create_index(
        "ix_invoices_draft_grace",
        "invoices",
        ["grace_until"],
        unique=False,
        postgresql_where=sa.text("status = 'draft'"),
    )
    op.create_index(op.f("ix_invoices_workspace_id"), "invoices", ["workspace_id"], unique=False)

    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("invoice_id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", _enum("invoice_line_kind"), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("plan_code", _enum("plan_tier"), nullable=True),
        sa.Column("metric", _enum("usage_metric"), nullable=True),
        sa.Column("usage_period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("unit_amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_lines_invoice_id_invoices"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_invoice_lines_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_invoice_lines_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_lines")),
    )
    op.create_index(
        "ix_invoice_lines_billed_usage",
        "invoice_lines",
        ["subscription_id", "usage_period_start", "metric"],
        unique=False,
    )
    op.create_index(op.f("ix_invoice_lines_invoice_id"), "invoice_lines", ["invoice_id"], unique=False)
    op.create_index(op.f("ix_invoice_lines_workspace_id"), "invoice_lines", ["workspace_id"], unique=False)

    op.create_table(
        "subscription_history_entries",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.BigInteger(), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("change", _enum("subscription_change"), nullable=False),
        sa.Column("from_plan_code", _enum("plan_tier"), nullable=True),
        sa.Column("to_plan_code", _enum("plan_tier"), nullable=True),
        sa.Column("from_status", _enum("subscription_status"), nullable=True),
        sa.Column("to_status", _enum("subscription_status"), nullable=True),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_subscription_history_entries_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_subscription_history_entries_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_history_entries")),
    )
    op.create_index(
        "ix_subscription_history_entries_subscription_effective",
        "subscription_history_entries",
        ["subscription_id", "effective_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_subscription_history_entries_workspace_id"),
        "subscription_history_entries",
        ["workspace_id"],
        unique=False,
    )

    op.create_table(
        "invoice_number_counters",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_number", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("last_number >= 0", name=op.f("ck_invoice_number_counters_last_number_not_negative")),
        sa.PrimaryKeyConstraint("year", name=op.f("pk_invoice_number_counters")),
    )

    op.create_table(
        "usage_watermarks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("last_txid", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("pending_horizon", sa.BigInteger(), nullable=True),
        sa.Column("pending_max_event_id", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_usage_watermarks")),
    )
    # The aggregation's row exists from the start: runs lock it, they never race to create it.
    op.execute("INSERT INTO usage_watermarks (name) VALUES ('usage_metrics')")

    op.execute(PERIOD_FUNCTIONS)
    op.execute(IMMUTABILITY_TRIGGERS)


def downgrade() -> None:
    op.execute(DROP_IMMUTABILITY_TRIGGERS)
    op.execute(DROP_PERIOD_FUNCTIONS)
    op.drop_table("usage_watermarks")
    op.drop_table("invoice_number_counters")
    op.drop_index(op.f("ix_subscription_history_entries_workspace_id"), table_name="subscription_history_entries")
    op.drop_index("ix_subscription_history_entries_subscription_effective", table_name="subscription_history_entries")
    op.drop_table("subscription_history_entries")
    op.drop_index(op.f("ix_invoice_lines_workspace_id"), table_name="invoice_lines")
    op.drop_index(op.f("ix_invoice_lines_invoice_id"), table_name="invoice_lines")
    op.drop_index("ix_invoice_lines_billed_usage", table_name="invoice_lines")
    op.drop_table("invoice_lines")
    op.drop_index(op.f("ix_invoices_workspace_id"), table_name="invoices")
    op.drop_index("ix_invoices_draft_grace", table_name="invoices")
    op.drop_table("invoices")
    op.drop_index("ix_usage_events_txid_id", table_name="usage_events")
    op.drop_column("usage_events", "txid")
    bind = op.get_bind()
    _enum("subscription_change").drop(bind, checkfirst=False)
    _enum("invoice_line_kind").drop(bind, checkfirst=False)
    _enum("invoice_status").drop(bind, checkfirst=False)
