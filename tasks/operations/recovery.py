"""Find runs the ledger calls `running` that no worker holds any more, and hand them back to the queue.

Every run holds a PostgreSQL advisory lock on its job id for as long as it runs (the job base takes it in the
run's transaction, before the row becomes `running`, and the outcome commits in that same transaction). So a
`running` row whose lock is free has lost its run: the worker was killed, lost its database connection, or
gave up its retries while the database was unreachable and could not write that down. Without this, such a
row waits for the sweeper's running cut-off (the longest hard time limit).

Taking the lock here is also what makes the hand-back safe: a run that is alive holds it, so it is skipped.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from workers.ledger import Publishable

# The job base's lock key: the first 8 bytes of the uuid as a signed 64-bit integer (workers.jobtask._lock_key).
RECOVER = text(
    """
    WITH running AS MATERIALIZED (
        SELECT id FROM jobs
        WHERE status = 'running' AND started_at <= clock_timestamp() - make_interval(secs => :min_age)
        ORDER BY started_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ),
    orphaned AS MATERIALIZED (
        SELECT id FROM running
        WHERE pg_try_advisory_xact_lock(('x' || substr(replace(id::text, '-', ''), 1, 16))::bit(64)::bigint)
    )
    UPDATE jobs SET status = 'queued', lost_runs = jobs.lost_runs + 1, published_at = clock_timestamp()
    FROM orphaned WHERE jobs.id = orphaned.id
    RETURNING jobs.id, jobs.task, jobs.args
    """
)


def recover_orphaned_runs(session: Session, *, min_age_seconds: float = 10.0, limit: int = 500) -> list[Publishable]:
    """Hand orphaned runs back to `queued` (one more lost run each); the caller commits, then publishes them."""
    rows = session.execute(RECOVER, {"min_age": min_age_seconds, "limit": limit}).all()
    return [Publishable(id=r.id, task=r.task, args=r.args) for r in rows]
