"""Activation: idempotent milestones, milestones proven by usage events, and the per-user/workspace rollup.

The activation rule (README, "Growth"): a user or workspace is **activated** once it has reached its first
value (the first email sent or the first campaign launched: the moment an outbound tool does its job) *and*
at least half of the ten milestones. ``activated_at`` is the moment both became true.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.core import Metric, TeamMember, Workspace
from models.growth import ActivationMilestone, GrowthWatermark, Milestone, MilestoneSource
from tasks.growth import txn
from workers.errors import BadInput

FIRST_VALUE_MILESTONES: tuple[Milestone, ...] = (Milestone.FIRST_EMAIL_SENT, Milestone.FIRST_CAMPAIGN_LAUNCHED)
ACTIVATION_MIN_MILESTONES = 5  # half of the ten
MILESTONE_COUNT = len(Milestone)

# Usage that proves a milestone by itself, so the main app need not report it.
USAGE_MILESTONES: dict[Metric, Milestone] = {
    Metric.EMAILS_SENT: Milestone.FIRST_EMAIL_SENT,
    Metric.LEADS_CREATED: Milestone.FIRST_LEAD_ADDED,
    Metric.CAMPAIGNS_CREATED: Milestone.FIRST_CAMPAIGN_CREATED,
}
USAGE_WATERMARK = "usage_milestones"
USAGE_BATCH_SIZE = 50_000
USAGE_MAX_BATCHES = 20  # bounded work per run; the next run (minutes later) carries on from the cursor


def _upsert_milestone(
    session: Session,
    workspace_id: int,
    user_id: int | None,
    milestone: Milestone,
    occurred_at: datetime,
    source: MilestoneSource,
) -> bool:
    table = ActivationMilestone.__table__
    stmt = insert(table).values(
        workspace_id=workspace_id, user_id=user_id, milestone=milestone, occurred_at=occurred_at, source=source
    )
    # Earliest time wins, so replays and out-of-order reports converge on the same row.
    stmt = stmt.on_conflict_do_update(
        index_elements=["workspace_id", "user_id", "milestone"],
        set_={"occurred_at": stmt.excluded.occurred_at, "source": stmt.excluded.source},
        where=stmt.excluded.occurred_at < table.c.occurred_at,
    ).returning(table.c.id)
    return session.execute(stmt).first() is not None


def record_milestone(
    session: Session,
    workspace_id: int,
    user_id: int | None,
    milestone: Milestone,
    occurred_at: datetime,
    source: MilestoneSource = MilestoneSource.APP,
) -> dict[str, Any]:
    """Record a milestone (a repeat changes nothing; an earlier time moves it back) and refresh the rollups."""
    if occurred_at.tzinfo is None:
        raise BadInput("occurred_at must carry a timezone")
    if session.get(Workspace, workspace_id) is None:
        raise BadInput(f"workspace {workspace_id} does not exist")
    if user_id is not None:
        member_workspace = session.execute(select(TeamMember.workspace_id).where(TeamMember.id == user_id)).scalar()
        if member_workspace != workspace_id:
            raise BadInput(f"user {user_id} is not a member of workspace {workspace_id}")
    changed = _upsert_milestone(session, workspace_id, user_id, milestone, occurred_at, source)
    rows = refresh_activation(session, [workspace_id])
    return {"workspace_id": workspace_id, "milestone": milestone.value, "changed": changed, "rollups": rows}


_FIRST_VALUE_SQL = ", ".join(f"'{m.value}'" for m in FIRST_VALUE_MILESTONES)

# One statement for every member and the workspace itself: a user's view is their own milestones plus the
# ones usage proved for the whole workspace (usage events do not say who acted); the workspace's view is all.
REFRESH_SQL = text(
    f"""
WITH ws AS (SELECT DISTINCT unnest(CAST(:workspace_ids AS bigint[])) AS workspace_id),
subjects AS (
    SELECT tm.workspace_id, tm.id AS user_id, tm.created_at AS joined_at
    FROM team_members tm JOIN ws ON ws.workspace_id = tm.workspace_id
    UNION ALL
    SELECT w.id, NULL::bigint, w.created_at FROM workspaces w JOIN ws ON ws.workspace_id = w.id
),
reached AS (
    SELECT s.workspace_id, s.user_id, s.joined_at, m.milestone, min(m.occurred_at) AS at
    FROM subjects s
    JOIN activation_milestones m
      ON m.workspace_id = s.workspace_id
     AND (s.user_id IS NULL OR m.user_id = s.user_id OR m.user_id IS NULL)
    GROUP BY s.workspace_id, s.user_id, s.joined_at, m.milestone
),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY workspace_id, user_id ORDER BY at, milestone) AS nth FROM reached
),
rolled AS (
    SELECT workspace_id, user_id, joined_at,
           jsonb_object_agg(milestone, at) AS milestones,
           count(*) AS reached,
           min(at) FILTER (WHERE milestone = 'account_created') AS account_created_at,
           min(at) FILTER (WHERE milestone IN ({_FIRST_VALUE_SQL})) AS first_value_at,
           min(at) FILTER (WHERE nth = :min_milestones) AS enough_at
    FROM ranked GROUP BY workspace_id, user_id, joined_at
),
final AS (
    SELECT *, coalesce(account_created_at, joined_at) AS started_at FROM rolled
)
INSERT INTO activation_metrics AS am (
    workspace_id, user_id, milestones, milestones_reached, activation_score, started_at, first_value_at,
    time_to_first_value_seconds, activated, activated_at, updated_at)
SELECT workspace_id, user_id, milestones, reached, reached::float / :milestone_count, started_at, first_value_at,
       CASE WHEN first_value_at IS NOT NULL
            THEN greatest(0, floor(extract(epoch FROM first_value_at - started_at)))::bigint END,
       first_value_at IS NOT NULL AND enough_at IS NOT NULL,
       CASE WHEN first_value_at IS NOT NULL AND enough_at IS NOT NULL THEN greatest(first_value_at, enough_at) END,
       now()
FROM final
ON CONFLICT (workspace_id, user_id) DO UPDATE SET
    milestones = excluded.milestones,
    milestones_reached = excluded.milestones_reached,
    activation_score = excluded.activation_score,
    started_at = excluded.started_at,
    first_value_at = excluded.first_value_at,
    time_to_first_value_seconds = excluded.time_to_first_value_seconds,
    activated = excluded.activated,
    activated_at = excluded.activated_at,
    updated_at = excluded.updated_at
"""
)


def refresh_activation(session: Session, workspace_ids: Sequence[int]) -> int:
    """Recompute activation_metrics for every member and the rollup of these workspaces; returns rows written.

    Two transactions that each add a milestone to the same workspace would otherwise each recompute the rollup
    from a snapshot without the other's milestone, and the later upsert would drop the earlier one's. Under the
    workspace lock, the rollup statement starts after the previous holder committed, so it sees its milestone.
    The milestone rows are written before the lock is taken, and only lock holders write activation_metrics, so a
    holder never waits on a transaction that is itself queued for the lock (no deadlock).
    """
    if not workspace_ids:
        return 0
    txn.lock_workspaces(session, "activation", workspace_ids)
    result = session.execute(
        REFRESH_SQL,
        {
            "workspace_ids": list(workspace_ids),
            "min_milestones": ACTIVATION_MIN_MILESTONES,
            "milestone_count": MILESTONE_COUNT,
        },
    )
    return int(result.rowcount or 0)


_USAGE_CASE = " ".join(
    f"WHEN '{metric.value}' THEN CAST('{milestone.value}' AS activation_milestone)"
    for metric, milestone in USAGE_MILESTONES.items()
)
_USAGE_METRICS = ", ".join(f"'{metric.value}'" for metric in USAGE_MILESTONES)

# The cursor is (txid, id). Only rows whose inserting transaction is older than this snapshot's xmin are read:
# every such transaction has ended, so no row can later appear behind the cursor (ids alone can commit out of
# order). The (txid, id) index makes each batch a range scan from the cursor, never a full scan.
USAGE_BATCH_SQL = text(
    f"""
WITH batch AS (
    SELECT id, txid, workspace_id, metric, occurred_at
    FROM usage_events
    WHERE (txid, id) > (:last_txid, :last_id)
      AND txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
    ORDER BY txid, id
    LIMIT :batch_size
),
proofs AS (
    SELECT workspace_id, CASE metric {_USAGE_CASE} END AS milestone, min(occurred_at) AS first_at
    FROM batch WHERE metric IN ({_USAGE_METRICS})
    GROUP BY workspace_id, metric
),
written AS (
    INSERT INTO activation_milestones AS m (workspace_id, user_id, milestone, occurred_at, source)
    SELECT workspace_id, NULL, milestone, first_at, 'usage' FROM proofs
    ON CONFLICT (workspace_id, user_id, milestone) DO UPDATE
        SET occurred_at = excluded.occurred_at, source = excluded.source
        WHERE excluded.occurred_at < m.occurred_at
    RETURNING m.workspace_id
),
last_row AS (SELECT txid, id FROM batch ORDER BY txid DESC, id DESC LIMIT 1)
SELECT (SELECT txid FROM last_row) AS last_txid,
       (SELECT id FROM last_row) AS last_id,
       (SELECT count(*) FROM batch) AS fetched,
       (SELECT coalesce(array_agg(DISTINCT workspace_id), '{{}}') FROM written) AS workspaces
"""
)


def sync_usage_milestones(
    session: Session,
    now: datetime,
    batch_size: int = USAGE_BATCH_SIZE,
    max_batches: int = USAGE_MAX_BATCHES,
) -> dict[str, Any]:
    """Record the milestones usage proves, reading only usage_events past the cursor (never a full scan)."""
    session.execute(
        insert(GrowthWatermark).values(name=USAGE_WATERMARK, last_id=0).on_conflict_do_nothing(index_elements=["name"])
    )
    # Row lock: a second run waits, then starts from the cursor this one leaves.
    mark = session.execute(
        select(GrowthWatermark.last_txid, GrowthWatermark.last_id)
        .where(GrowthWatermark.name == USAGE_WATERMARK)
        .with_for_update()
    ).one()
    last_txid, last_id = int(mark.last_txid), int(mark.last_id)
    start = (last_txid, last_id)
    scanned = 0
    touched: set[int] = set()
    for _ in range(max_batches):
        row = session.execute(
            USAGE_BATCH_SQL, {"last_txid": last_txid, "last_id": last_id, "batch_size": batch_size}
        ).one()
        if row.last_id is not None:
            last_txid, last_id = int(row.last_txid), int(row.last_id)
            scanned += int(row.fetched)
        touched.update(int(w) for w in row.workspaces)
        if row.fetched < batch_size:
            break  # caught up with every finished transaction
    refresh_activation(session, sorted(touched))
    session.execute(
        GrowthWatermark.__table__.update()
        .where(GrowthWatermark.name == USAGE_WATERMARK)
        .values(last_txid=last_txid, last_id=last_id, updated_at=now)
    )
    return {
        "from": list(start),
        "to": [last_txid, last_id],
        "events_scanned": scanned,
        "workspaces_updated": len(touched),
    }
