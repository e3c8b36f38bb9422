"""Roll usage_events into usage_metrics from a watermark, and read exact usage (aggregate + tail).

Why not an id watermark: a transaction that took id 100 may commit after one that took id 101 was already
aggregated, and id 100 would be skipped for ever. Each event therefore records its inserting transaction (txid).
A run fixes a horizon, the oldest transaction of this database still in progress (HORIZON): no event with a txid
below it can appear any more, so the range of events with last_txid <= txid < horizon is closed and immutable.
The run aggregates that range in chunks of primary-key id spans (one set-based statement each, so the work is a
range scan, never an ordered pass over the table) and records its progress in the watermark row: events with
txid below `last_txid` are done, and inside the pending range, those with id <= `last_event_id`.

The watermark row is locked FOR UPDATE for the run and moved in the same transaction as the sums it covers, so
two concurrent runs serialise (the second starts from where the first ended) and a redelivered run that had not
committed starts again from the same place: no event is counted twice or skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from models.core import Metric

WATERMARK_NAME = "usage_metrics"
# An id span per statement: large, because a span costs a range scan plus one upsert per (subscription, metric,
# period) touched, and the upserts repeat in every span; steady-state ranges (a minute of events) fit in one.
DEFAULT_CHUNK_EVENTS = 5_000_000
DEFAULT_MAX_CHUNKS = 40

LOCK_WATERMARK = text(
    """
    SELECT last_txid, last_event_id, pending_horizon, pending_max_event_id
    FROM usage_watermarks WHERE name = :name FOR UPDATE
    """
)
SNAPSHOT = text("SELECT pg_current_snapshot()::text")
# The lowest transaction of *this database* still in progress when SNAPSHOT was taken (else the snapshot's xmax).
# pg_snapshot_xmin alone is cluster-wide: a long transaction in another database on the same server would hold
# aggregation back though it can never write our events. A transaction of ours that was in progress at the
# snapshot is either still listed in pg_stat_activity (read afterwards, in a later statement) and so bounds the
# horizon, or has finished and its rows are visible to the statements that follow; one that starts later gets an
# id at or above the snapshot's xmax. backend_xid is shown to every role (pg_stat_activity docs).
HORIZON = text(
    """
    SELECT coalesce(
        (SELECT min(x::text::bigint) FROM pg_snapshot_xip(CAST(:snapshot AS pg_snapshot)) AS x
         WHERE (x::text::bigint % 4294967296) IN (
             SELECT backend_xid::text::bigint FROM pg_stat_activity
             WHERE datname = current_database() AND backend_xid IS NOT NULL
             UNION ALL
             SELECT transaction::text::bigint FROM pg_prepared_xacts WHERE database = current_database())),
        pg_snapshot_xmax(CAST(:snapshot AS pg_snapshot))::text::bigint)
    """
)
# The smallest id in a closed txid range: a skip scan over the (txid, id) index, one probe per transaction.
RANGE_FIRST_ID = text(
    """
    WITH RECURSIVE firsts(txid, id) AS (
        (SELECT txid, id FROM usage_events WHERE txid >= :low AND txid < :high ORDER BY txid, id LIMIT 1)
        UNION ALL
        SELECT next.txid, next.id FROM firsts
        CROSS JOIN LATERAL (
            SELECT txid, id FROM usage_events WHERE txid > firsts.txid AND txid < :high
            ORDER BY txid, id LIMIT 1
        ) AS next
    )
    SELECT min(id) FROM firsts
    """
)
# Every event of the closed range has an id at or below the largest committed id now.
LAST_ID = text("SELECT max(id) FROM usage_events")

# One set-based statement per chunk. Events inside their subscription's current period (nearly all of them) are
# placed by a comparison; the rest are first grouped by timestamp and placed by billing_period_for (the
# migration's SQL: the successor periods of a subscription not yet rolled, or the invoiced period a late event
# belongs to), so the per-event cost stays a join and a sum.
AGGREGATE_CHUNK = text(
    """
    WITH chunk AS (
        SELECT subscription_id, metric, occurred_at, quantity FROM usage_events
        WHERE id > :after_id AND id <= :up_to_id AND txid >= :low AND txid < :high
    ), grouped AS MATERIALIZED (
        SELECT c.subscription_id, c.metric,
               CASE WHEN c.occurred_at >= s.current_period_start AND c.occurred_at < s.current_period_end
                    THEN NULL ELSE c.occurred_at END AS off_period_at,
               sum(c.quantity) AS quantity, count(*) AS events
        FROM chunk c JOIN subscriptions s ON s.id = c.subscription_id
        GROUP BY 1, 2, 3
    ), placed AS MATERIALIZED (
        SELECT g.subscription_id, g.metric, g.quantity, s.workspace_id,
               s.current_period_start, s.current_period_end,
               CASE WHEN g.off_period_at IS NULL THEN NULL
                    ELSE billing_period_for(g.subscription_id, g.off_period_at) END AS p
        FROM grouped g JOIN subscriptions s ON s.id = g.subscription_id
    ), upserted AS (
        INSERT INTO usage_metrics (workspace_id, subscription_id, metric, period_start, period_end, quantity,
                                   updated_at)
        SELECT workspace_id, subscription_id, metric,
               coalesce((p).period_start, current_period_start),
               max(coalesce((p).period_end, current_period_end)),
               sum(quantity), now()
        FROM placed
        GROUP BY workspace_id, subscription_id, metric, coalesce((p).period_start, current_period_start)
        ON CONFLICT (subscription_id, metric, period_start)
        DO UPDATE SET quantity = usage_metrics.quantity + excluded.quantity, updated_at = excluded.updated_at
        RETURNING 1
    )
    SELECT coalesce(sum(events), 0)::bigint FROM grouped
    """
)

MOVE_WATERMARK = text(
    """
    UPDATE usage_watermarks SET last_txid = :low, last_event_id = :done_id, pending_horizon = :high,
        pending_max_event_id = :max_id, updated_at = now()
    WHERE name = :name
    """
)


@dataclass
class AggregationResult:
    events: int
    chunks: int
    watermark: tuple[int, int]
    more: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "events": self.events,
            "chunks": self.chunks,
            "watermark": list(self.watermark),
            "more": self.more,
        }


def aggregate_usage(
    session: Session,
    *,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
    max_chunks: int = DEFAULT_MAX_CHUNKS,
) -> AggregationResult:
    """Aggregate up to `max_chunks` id spans of `chunk_events` ids in the caller's transaction."""
    isolation = session.execute(text("SHOW transaction_isolation")).scalar_one()
    if isolation != "read committed":
        # The horizon needs every statement to see what committed before it; under one transaction snapshot a
        # transaction that commits between the first statement and the horizon would fall below it unseen.
        raise RuntimeError(f"aggregate_usage needs READ COMMITTED, not {isolation.upper()}")
    row = session.execute(LOCK_WATERMARK, {"name": WATERMARK_NAME}).one()
    low, done_id = int(row.last_txid), int(row.last_event_id)
    high, max_id = row.pending_horizon, row.pending_max_event_id
    # Short statements whose JIT compilation would cost more than it saves (tens of ms per chunk).
    session.execute(text("SET LOCAL jit = off"))
    if high is None:
        snapshot = session.execute(SNAPSHOT).scalar_one()
        # Drop any backend-status snapshot cached earlier in this transaction: the read must come after SNAPSHOT.
        session.execute(text("SELECT pg_stat_clear_snapshot()"))
        horizon = int(session.execute(HORIZON, {"snapshot": snapshot}).scalar_one())
        if horizon <= low:
            return AggregationResult(events=0, chunks=0, watermark=(low, done_id), more=False)
        first_id = session.execute(RANGE_FIRST_ID, {"low": low, "high": horizon}).scalar_one()
        if first_id is None:
            # Nothing in the range: it is closed and empty, move past it.
            session.execute(
                MOVE_WATERMARK,
                {"low": horizon, "done_id": 0, "high": None, "max_id": None, "name": WATERMARK_NAME},
            )
            return AggregationResult(events=0, chunks=0, watermark=(horizon, 0), more=False)
        high, max_id, done_id = horizon, int(session.execute(LAST_ID).scalar_one()), int(first_id) - 1
    events = 0
    chunks = 0
    while done_id < max_id and chunks < max_chunks:
        up_to = min(done_id + chunk_events, max_id)
        events += session.execute(
            AGGREGATE_CHUNK, {"after_id": done_id, "up_to_id": up_to, "low": low, "high": high}
        ).scalar_one()
        done_id = up_to
        chunks += 1
    if done_id >= max_id:
        low, done_id, high, max_id = high, 0, None, None
    session.execute(
        MOVE_WATERMARK, {"low": low, "done_id": done_id, "high": high, "max_id": max_id, "name": WATERMARK_NAME}
    )
    return AggregationResult(events=events, chunks=chunks, watermark=(low, done_id), more=high is not None)


# One statement, so the watermark, the aggregates and the tail are read in one snapshot: an event is either in
# usage_metrics or past the watermark, never both, never neither.
PERIOD_USAGE = text(
    """
    WITH wm AS (
        SELECT last_txid, last_event_id, coalesce(pending_horizon, last_txid) AS pending_horizon
        FROM usage_watermarks WHERE name = :name
    )
    SELECT u.metric::text AS metric, sum(u.quantity)::bigint AS quantity FROM (
        SELECT um.metric, um.quantity FROM usage_metrics um
        WHERE um.subscription_id = :subscription_id AND um.period_start = :period_start
        UNION ALL
        SELECT e.metric, e.quantity FROM usage_events e CROSS JOIN wm
        WHERE e.txid >= wm.last_txid AND (e.txid >= wm.pending_horizon OR e.id > wm.last_event_id)
          AND e.subscription_id = :subscription_id
          AND e.occurred_at >= :period_start AND e.occurred_at < :period_end
    ) u
    GROUP BY u.metric
    """
)


def period_usage(
    session: Session, subscription_id: int, period_start: datetime, period_end: datetime
) -> dict[Metric, int]:
    """Exact usage of one subscription in one period: aggregated sums plus the not-yet-aggregated tail."""
    rows = session.execute(
        PERIOD_USAGE,
        {
            "name": WATERMARK_NAME,
            "subscription_id": subscription_id,
            "period_start": period_start,
            "period_end": period_end,
        },
    )
    usage = {metric: 0 for metric in Metric}
    for row in rows:
        usage[Metric(row.metric)] = int(row.quantity)
    return usage
