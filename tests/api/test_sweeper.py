"""The outbox sweeper's claim: two sweepers at once never take (and so never publish) the same ledger row."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from models.core import Job
from tests.support.jobs import enqueue
from workers.db import session_scope
from workers.ledger import sweep_stale

GRACE = timedelta(seconds=60)
MAX_RUNNING = timedelta(hours=1)


def _stale_rows(workspace_id: int, count: int) -> set[uuid.UUID]:
    ids = {
        enqueue("system.ping", {"message": f"s{i}"}, workspace_id=workspace_id, publish_now=False) for i in range(count)
    }
    long_ago = datetime.now(UTC) - timedelta(days=365 * 20)
    with session_scope() as s:
        s.execute(update(Job).where(Job.id.in_(ids)).values(enqueued_at=long_ago, run_at=long_ago))
    return ids


def test_a_sweeper_skips_rows_another_holds_and_rows_it_stamped(make_workspace: Callable[..., int]) -> None:
    ids = _stale_rows(make_workspace(), 10)
    with session_scope() as first:
        taken = {p.id for p in sweep_stale(first, grace=GRACE, max_running=MAX_RUNNING, limit=1000)}
        assert ids <= taken
        # The first sweeper has not committed: its rows are locked, and the second skips them.
        with session_scope() as second:
            assert not ids & {p.id for p in sweep_stale(second, grace=GRACE, max_running=MAX_RUNNING)}
    # Committed: the rows carry a fresh published_at and are not stale again until the grace has passed.
    with session_scope() as third:
        assert not ids & {p.id for p in sweep_stale(third, grace=GRACE, max_running=MAX_RUNNING)}


def test_two_sweepers_racing_share_the_rows_without_overlap(make_workspace: Callable[..., int]) -> None:
    ids = _stale_rows(make_workspace(), 60)
    taken: list[list[uuid.UUID]] = [[], []]
    start = threading.Barrier(2)

    def sweeper(slot: int) -> None:
        start.wait()
        while True:
            with session_scope() as s:
                batch = [p.id for p in sweep_stale(s, grace=GRACE, max_running=MAX_RUNNING, limit=5)]
            if not batch:
                return
            taken[slot].extend(batch)

    threads = [threading.Thread(target=sweeper, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    mine = [[i for i in batch if i in ids] for batch in taken]
    assert not set(mine[0]) & set(mine[1])
    assert len(mine[0]) + len(mine[1]) == len(ids) and set(mine[0]) | set(mine[1]) == ids
