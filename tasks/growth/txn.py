"""Transaction settings every growth job shares: UTC day arithmetic and advisory locks against concurrent runs."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.orm import Session

# Two-key advisory locks (namespace, key): the namespace keeps them apart from other areas' one-key locks.
_NAMESPACE = "growth"
_INT4_MAX = 2_147_483_647


def utc(session: Session) -> None:
    """Make `timestamptz ± interval 'N days'` and date casts mean UTC days in this transaction.

    PostgreSQL adds day intervals in the session's TimeZone: under a DST zone '14 days' back across the switch
    is 335 or 337 hours, and a date becomes that zone's midnight. The windows here are defined in UTC.
    """
    session.execute(text("SET LOCAL TIME ZONE 'UTC'"))


def serialise(session: Session, job: str) -> None:
    """One run of `job` at a time (a second beat, a manual run): the next waits, then sees the first's commit.

    Transaction-scoped, so a killed worker's lock goes with its connection.
    """
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:namespace), hashtext(:job))"),
        {"namespace": _NAMESPACE, "job": job},
    )


def lock_workspaces(session: Session, purpose: str, workspace_ids: Iterable[int]) -> None:
    """Per-workspace advisory locks, taken in ascending order so two lockers can never wait on each other."""
    keys = sorted({int(w) % _INT4_MAX for w in workspace_ids})
    if not keys:
        return
    session.execute(
        text(
            "SELECT count(pg_advisory_xact_lock(hashtext(:purpose), k)) "
            "FROM (SELECT unnest(CAST(:keys AS int[])) AS k ORDER BY 1) ordered"
        ),
        {"purpose": f"{_NAMESPACE}.{purpose}", "keys": keys},
    )
