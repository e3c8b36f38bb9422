"""The growth tasks through a real worker and broker, their argument checks, and their beat entries."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.schedules import crontab
from sqlalchemy import select
from sqlalchemy.orm import Session

from beat_schedule import BEAT_SCHEDULE, GROWTH
from models.growth import ActivationMilestone, Milestone, RetentionMetrics
from tests.growth import support
from tests.support.jobs import enqueue, wait_for_job

GROWTH_TASKS = {
    "growth.score_churn_risk",
    "growth.detect_expansion",
    "growth.snapshot_nps",
    "growth.schedule_nps_surveys",
    "growth.expire_invitations",
    "growth.publish_releases",
    "growth.sync_usage_milestones",
}


def test_beat_entries_are_crontabs_with_expiry() -> None:
    assert {entry["task"] for entry in GROWTH.values()} == GROWTH_TASKS
    for name, entry in GROWTH.items():
        assert BEAT_SCHEDULE[name] is entry
        assert isinstance(entry["schedule"], crontab)
        assert entry["options"]["expires"] > 0


def _run(task: str, args: dict[str, Any], workspace_id: int | None = None) -> Any:
    # run_job() takes workspace_id for the ledger itself; these tasks also have it as an argument.
    return wait_for_job(enqueue(task, args, workspace_id=workspace_id), timeout=60)


def test_jobs_run_on_a_real_worker(session: Session, run_job: Callable[..., Any]) -> None:
    now = datetime.now(UTC)
    ws, sub = support.workspace(session, now - timedelta(days=60), period_start=now - timedelta(days=5))
    user = support.member(session, ws, now - timedelta(days=60), last_active_at=now - timedelta(days=2))
    support.usage(session, ws, sub, [now - timedelta(days=3)], metric="leads_created")

    recorded = _run(
        "growth.record_milestone",
        {
            "workspace_id": ws,
            "user_id": user,
            "milestone": "crm_connected",
            "occurred_at": (now - timedelta(days=1)).isoformat(),
        },
        workspace_id=ws,
    )
    assert recorded.status == "succeeded", recorded.error
    milestones: set[Milestone] = set()
    deadline = time.monotonic() + 60
    # The cursor waits for every older transaction on the server to end, so poll rather than expect one run.
    while len(milestones) < 2 and time.monotonic() < deadline:
        synced = run_job("growth.sync_usage_milestones")
        assert synced.status == "succeeded", synced.error
        session.expire_all()
        milestones = set(
            session.execute(
                select(ActivationMilestone.milestone).where(ActivationMilestone.workspace_id == ws)
            ).scalars()
        )
    assert milestones == {Milestone.CRM_CONNECTED, Milestone.FIRST_LEAD_ADDED}

    scored = _run("growth.score_churn_risk", {"workspace_id": ws}, workspace_id=ws)
    assert scored.status == "succeeded", scored.error
    assert scored.result["workspaces_scored"] == 1
    row = session.execute(select(RetentionMetrics).where(RetentionMetrics.workspace_id == ws)).scalar_one()
    assert row.days_since_last_key_action < 2.1 and 0 <= row.churn_risk_score <= 100

    for task in ("growth.detect_expansion", "growth.snapshot_nps", "growth.expire_invitations"):
        outcome = run_job(task)
        assert outcome.status == "succeeded", (task, outcome.error)


def test_bad_input_fails_once_with_a_reason(session: Session, run_job: Callable[..., Any]) -> None:
    ws, _ = support.workspace(session, datetime.now(UTC) - timedelta(days=1))
    other, _ = support.workspace(session, datetime.now(UTC) - timedelta(days=1))
    stranger = support.member(session, other, datetime.now(UTC))
    args = {"workspace_id": ws, "user_id": stranger, "milestone": "crm_connected", "occurred_at": "2030-01-01T00:00Z"}
    bad = _run("growth.record_milestone", args, workspace_id=ws)
    assert bad.status == "failed" and bad.attempts == 1
    assert "not a member" in (bad.error or "")
