"""Feedback upvotes: one per (feedback, user), with the count on the feedback always equal to the rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from workers.errors import BadInput

# One statement: the counter moves by exactly the number of rows the INSERT (or DELETE) really changed.
# A concurrent duplicate waits on the unique index, then inserts nothing, so it adds nothing; the UPDATE's row
# lock serialises the increments of different users.
UPVOTE_SQL = text(
    """
WITH target AS (
    SELECT f.id, f.workspace_id FROM feedback_submissions f
    JOIN team_members tm ON tm.id = :user_id
    WHERE f.id = :feedback_id
),
added AS (
    INSERT INTO feedback_upvotes (feedback_id, workspace_id, user_id)
    SELECT target.id, tm.workspace_id, :user_id FROM target JOIN team_members tm ON tm.id = :user_id
    ON CONFLICT (feedback_id, user_id) DO NOTHING
    RETURNING feedback_id
)
UPDATE feedback_submissions f
SET upvote_count = f.upvote_count + (SELECT count(*) FROM added)
FROM target
WHERE f.id = target.id
RETURNING f.upvote_count, (SELECT count(*) FROM added) AS added
"""
)

REMOVE_SQL = text(
    """
WITH removed AS (
    DELETE FROM feedback_upvotes WHERE feedback_id = :feedback_id AND user_id = :user_id RETURNING feedback_id
)
UPDATE feedback_submissions f
SET upvote_count = f.upvote_count - (SELECT count(*) FROM removed)
WHERE f.id = :feedback_id
RETURNING f.upvote_count, (SELECT count(*) FROM removed) AS removed
"""
)


def upvote(session: Session, feedback_id: int, user_id: int) -> dict[str, Any]:
    row = session.execute(UPVOTE_SQL, {"feedback_id": feedback_id, "user_id": user_id}).first()
    if row is None:
        raise BadInput("feedback or user does not exist")
    return {"feedback_id": feedback_id, "upvote_count": int(row.upvote_count), "added": bool(row.added)}


def remove_upvote(session: Session, feedback_id: int, user_id: int) -> dict[str, Any]:
    row = session.execute(REMOVE_SQL, {"feedback_id": feedback_id, "user_id": user_id}).first()
    if row is None:
        raise BadInput("feedback does not exist")
    return {"feedback_id": feedback_id, "upvote_count": int(row.upvote_count), "removed": bool(row.removed)}
