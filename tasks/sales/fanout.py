"""Which workspaces the periodic sales jobs visit (beat cannot name workspaces; these queries do)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

# The board shows reps active in the last 30 days: a workspace quiet for longer has nothing to refresh.
BOARD_ACTIVE_DAYS = 30

_BOARD_WORKSPACES = text(
    """
    SELECT w.id FROM workspaces w
    WHERE EXISTS (
        SELECT 1 FROM sales_activities a WHERE a.workspace_id = w.id AND a.occurred_at >= :since
    )
    ORDER BY w.id
    """
)

_LEARNING_WORKSPACES = text(
    """
    SELECT w.id FROM workspaces w
    LEFT JOIN adaptive_ai_configs c ON c.workspace_id = w.id
    WHERE coalesce(c.enabled, true)
      AND EXISTS (
        SELECT 1 FROM sales_activities a
        WHERE a.workspace_id = w.id AND a.activity_type = 'email_sent'
          AND a.occurred_at >= CAST(:now AS timestamptz) - make_interval(days => coalesce(c.lookback_days, 90))
      )
    ORDER BY w.id
    """
)


def board_workspaces(session: Session, now: datetime) -> list[int]:
    return list(session.scalars(_BOARD_WORKSPACES, {"since": now - timedelta(days=BOARD_ACTIVE_DAYS)}))


def learning_workspaces(session: Session, now: datetime) -> list[int]:
    return list(session.scalars(_LEARNING_WORKSPACES, {"now": now}))


def five_minute_slot(now: datetime) -> str:
    """The beat slot a fan-out belongs to: a second beat (or a redelivery) in the same slot enqueues nothing."""
    return now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0).isoformat()
