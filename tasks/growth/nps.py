"""NPS snapshots (rolling 30/90 days, per workspace and overall) and survey eligibility."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.growth import NPSSnapshot
from tasks.growth import txn
from tasks.growth.nps_math import NPSSummary

WINDOWS_DAYS = (30, 90)
SURVEY_INTERVAL_DAYS = 30  # the spec: at most one survey per user per 30 days
FIRST_SURVEY_AFTER_ACTIVATION_DAYS = 14

# Each respondent's latest answer in (as_of - window, as_of]; GROUPING SETS gives every workspace and the
# overall row (workspace_id NULL) in one pass.
COUNTS_SQL = text(
    """
WITH latest AS (
    SELECT DISTINCT ON (r.user_id) r.workspace_id, r.score
    FROM nps_responses r
    WHERE r.responded_at > :as_of - make_interval(days => :window_days) AND r.responded_at <= :as_of
    ORDER BY r.user_id, r.responded_at DESC, r.id DESC
)
SELECT workspace_id, grouping(workspace_id) = 1 AS overall,
       count(*) FILTER (WHERE score >= 9) AS promoters,
       count(*) FILTER (WHERE score BETWEEN 7 AND 8) AS passives,
       count(*) FILTER (WHERE score <= 6) AS detractors
FROM latest
GROUP BY GROUPING SETS ((workspace_id), ())
ORDER BY overall, workspace_id
"""
)

DELETE_STALE_SQL = text(
    """
DELETE FROM nps_snapshots
WHERE snapshot_date = :day AND window_days = :window_days
  AND workspace_id IS NOT NULL AND workspace_id <> ALL(CAST(:kept AS bigint[]))
"""
)


def snapshot_nps(session: Session, as_of: datetime) -> dict[str, Any]:
    """Write today's rolling NPS rows (re-running the same day overwrites them: idempotent)."""
    as_of = as_of.astimezone(UTC)  # the snapshot date is the UTC day, whatever zone the caller's clock is in
    txn.utc(session)
    txn.serialise(session, "snapshot_nps")
    written = 0
    overall: dict[str, Any] = {}
    for window in WINDOWS_DAYS:
        rows = session.execute(COUNTS_SQL, {"as_of": as_of, "window_days": window}).all()
        values = []
        for row in rows:
            summary = NPSSummary(int(row.promoters), int(row.passives), int(row.detractors))
            values.append(
                {
                    "snapshot_date": as_of.date(),
                    "window_days": window,
                    "workspace_id": None if row.overall else row.workspace_id,
                    "promoters": summary.promoters,
                    "passives": summary.passives,
                    "detractors": summary.detractors,
                    "responses": summary.responses,
                    "nps": summary.value,
                    "margin_of_error": summary.margin_of_error,
                    "thin": summary.thin,
                    "computed_at": as_of,
                }
            )
            if row.overall:
                overall[f"{window}d"] = {"nps": summary.value, "responses": summary.responses, "thin": summary.thin}
        # A re-run the same day replaces the day's rows: a workspace whose answers have all left the window since
        # the earlier run must not keep that run's figure.
        session.execute(
            DELETE_STALE_SQL,
            {
                "day": as_of.date(),
                "window_days": window,
                "kept": [v["workspace_id"] for v in values if v["workspace_id"] is not None],
            },
        )
        if not values:
            continue
        # Rows as executemany parameters: SQLAlchemy sends them in pages of multi-row VALUES, so ten thousand
        # workspaces never hit PostgreSQL's 65,535 bind parameters per statement.
        stmt = insert(NPSSnapshot)
        stmt = stmt.on_conflict_do_update(
            index_elements=["snapshot_date", "window_days", "workspace_id"],
            set_={
                c: stmt.excluded[c]
                for c in ("promoters", "passives", "detractors", "responses", "nps", "margin_of_error", "thin")
            }
            | {"computed_at": stmt.excluded.computed_at},
        )
        session.execute(stmt, values)
        written += len(values)
    return {"snapshot_date": as_of.date().isoformat(), "rows": written, "overall": overall}


# Due: activated at least 14 days ago, no answer and no survey offered in the last 30 days.
ELIGIBILITY_SQL = text(
    """
INSERT INTO survey_eligibilities (workspace_id, user_id, eligible_on, reason)
SELECT am.workspace_id, am.user_id, :today,
       CASE WHEN EXISTS (SELECT 1 FROM nps_responses r WHERE r.user_id = am.user_id)
            THEN 'periodic' ELSE 'first_survey' END
FROM activation_metrics am
WHERE am.user_id IS NOT NULL
  AND am.activated
  AND am.activated_at <= :activated_before
  AND NOT EXISTS (SELECT 1 FROM nps_responses r WHERE r.user_id = am.user_id AND r.responded_at > :interval_start)
  AND NOT EXISTS (SELECT 1 FROM survey_eligibilities e
                  WHERE e.user_id = am.user_id AND e.eligible_on > :last_offer_after)
ON CONFLICT (user_id, eligible_on) DO NOTHING
"""
)


def schedule_nps_surveys(session: Session, now: datetime) -> dict[str, Any]:
    now = now.astimezone(UTC)
    # Serialised: two runs either side of midnight would each miss the other's uncommitted offer (NOT EXISTS)
    # and offer the same user a survey on two days in a row.
    txn.serialise(session, "schedule_nps_surveys")
    today = now.date()
    result = session.execute(
        ELIGIBILITY_SQL,
        {
            "today": today,
            "activated_before": now - timedelta(days=FIRST_SURVEY_AFTER_ACTIVATION_DAYS),
            "interval_start": now - timedelta(days=SURVEY_INTERVAL_DAYS),
            "last_offer_after": today - timedelta(days=SURVEY_INTERVAL_DAYS),
        },
    )
    return {"eligible_on": today.isoformat(), "users_due": int(result.rowcount or 0)}
