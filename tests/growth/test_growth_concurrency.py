"""Overlapping runs against the real database: a second run waits for the first, rollups lose nothing, a token
works once. Each test holds one transaction open and proves the other is waiting on it (pg_locks) before letting go,
so the interleaving is forced, not left to timing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from models.core import Role, TeamMember
from models.growth import ActivationMetrics, ExpansionMetrics, Milestone
from tasks.growth import activation, churn, expansion, invitations, nps
from tests.growth import support
from workers.db import session_scope
from workers.errors import BadInput

NOW = datetime(2034, 4, 2, 5, 0, tzinfo=UTC)


class Contender(threading.Thread):
    """Runs `work` in its own session and transaction; records its backend pid first so we can watch it wait."""

    def __init__(self, work: Callable[[Session], Any]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.pid: int | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.waited_on: str | None = None
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            with session_scope() as s:
                self.pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
                self.ready.set()
                self.result = self.work(s)
        except BaseException as exc:
            self.error = exc
        finally:
            self.ready.set()


def _waiting_lock(contender: Contender, timeout: float = 60.0) -> str | None:
    """The type of lock the contender is waiting for, polling up to `timeout` seconds while it still runs;
    None if it finished without waiting."""
    deadline = time.monotonic() + timeout
    while contender.is_alive() and time.monotonic() < deadline:
        with session_scope() as probe:
            locktype = probe.execute(
                text("SELECT locktype FROM pg_locks WHERE pid = :pid AND NOT granted LIMIT 1"), {"pid": contender.pid}
            ).scalar()
        if locktype is not None:
            return str(locktype)
        time.sleep(0.05)
    return None


def _contend(session: Session, first: Callable[[Session], Any], second: Callable[[Session], Any]) -> Contender:
    """`first` in the test's session, left uncommitted; `second` in a thread, which must wait; then commit.
    The lock type the second run waited on is left in `contender.waited_on`."""
    first(session)
    contender = Contender(second)
    contender.start()
    assert contender.ready.wait(60) and contender.pid is not None, contender.error
    contender.waited_on = _waiting_lock(contender)
    session.commit()
    contender.join(120)
    assert not contender.is_alive()
    if contender.error is not None:
        raise contender.error
    assert contender.waited_on is not None, "the second run did not wait for the first"
    return contender


# Each job and the lock a second run waits on before it reads anything: an advisory lock for the whole run, or
# (the usage cursor) the watermark row. Waiting on a data row instead would mean both runs did the work at once.
SERIALISED_JOBS: dict[str, tuple[Callable[[Session], Any], str]] = {
    "score_churn_risk": (lambda s: churn.score_churn_risk(s, NOW, retrain=False), "advisory"),
    "detect_expansion": (lambda s: expansion.detect_expansion(s, NOW), "advisory"),
    "snapshot_nps": (lambda s: nps.snapshot_nps(s, NOW), "advisory"),
    "schedule_nps_surveys": (lambda s: nps.schedule_nps_surveys(s, NOW), "advisory"),
    "sync_usage_milestones": (lambda s: activation.sync_usage_milestones(s, NOW), "transactionid"),
}


@pytest.mark.parametrize("job", sorted(SERIALISED_JOBS))
def test_a_second_run_waits_for_the_first(session: Session, job: str) -> None:
    """Two beats (or a beat and a manual run) of the same job never interleave: the second waits for the first."""
    run, lock = SERIALISED_JOBS[job]
    assert _contend(session, run, run).waited_on == lock


def test_overlapping_detections_keep_one_opportunity_per_type(session: Session) -> None:
    ws, sub = support.workspace(session, NOW - timedelta(days=60), plan="starter", period_start=NOW - timedelta(days=5))
    session.execute(
        text(
            "INSERT INTO usage_metrics (workspace_id, subscription_id, metric, period_start, period_end, quantity) "
            "VALUES (:ws, :sub, 'emails_sent', :start, :end, 4900)"
        ),
        {"ws": ws, "sub": sub, "start": NOW - timedelta(days=5), "end": NOW + timedelta(days=25)},
    )
    session.commit()
    _contend(session, lambda s: expansion.detect_expansion(s, NOW), lambda s: expansion.detect_expansion(s, NOW))
    rows = session.execute(
        select(ExpansionMetrics.opportunity_type, func.count())
        .where(ExpansionMetrics.subscription_id == sub)
        .group_by(ExpansionMetrics.opportunity_type)
    ).all()
    assert rows and all(count == 1 for _, count in rows)


def test_concurrent_milestones_both_reach_the_workspace_rollup(session: Session) -> None:
    """Each transaction recomputes the rollup; the later one must see the earlier one's milestone, not erase it."""
    ws, _ = support.workspace(session, NOW - timedelta(days=3))
    first_user = support.member(session, ws, NOW - timedelta(days=3))
    second_user = support.member(session, ws, NOW - timedelta(days=3))
    contender = _contend(
        session,
        lambda s: activation.record_milestone(s, ws, first_user, Milestone.PROFILE_COMPLETED, NOW - timedelta(hours=2)),
        lambda s: activation.record_milestone(s, ws, second_user, Milestone.CRM_CONNECTED, NOW - timedelta(hours=1)),
    )
    assert contender.result["changed"] is True
    session.expire_all()
    rollup = session.execute(
        select(ActivationMetrics).where(ActivationMetrics.workspace_id == ws, ActivationMetrics.user_id.is_(None))
    ).scalar_one()
    assert rollup.milestones_reached == 2
    assert set(rollup.milestones) == {Milestone.PROFILE_COMPLETED.value, Milestone.CRM_CONNECTED.value}


def test_one_token_accepted_once_by_concurrent_clicks(session: Session) -> None:
    ws, _ = support.workspace(session, NOW - timedelta(days=3))
    created = invitations.create_invitation(session, ws, "race@example.com", Role.MEMBER, None, NOW)
    session.commit()
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def click() -> None:
        try:
            start.wait(timeout=60)
            with session_scope() as s:
                invitations.accept_invitation(s, created.token, "Racer", NOW + timedelta(hours=1))
            outcomes.append("accepted")
        except BadInput:
            outcomes.append("refused")
        except BaseException as exc:
            outcomes.append(f"error: {exc!r}")

    threads = [threading.Thread(target=click) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(outcomes) == ["accepted"] + ["refused"] * 7
    members = session.execute(
        select(func.count())
        .select_from(TeamMember)
        .where(TeamMember.workspace_id == ws, TeamMember.email == "race@example.com")
    ).scalar_one()
    assert members == 1
