"""The sales tasks through the ledger and a real worker on the real broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

import beat_schedule
from models.core import Job, JobStatus
from tests.sales.factory import ingest, item, make_reps
from tests.support.jobs import enqueue, wait_for_job
from workers.db import session_scope


def _run(task: str, workspace_id: int, **args: object) -> Job:
    # tests.support.jobs.run_job takes `workspace_id` for the ledger row; these tasks also need it as an argument.
    return wait_for_job(enqueue(task, {"workspace_id": workspace_id, **args}, workspace_id=workspace_id))


def test_ingest_sync_and_learn_run_as_jobs(run_job, make_workspace) -> None:
    workspace_id = make_workspace()
    (rep,) = make_reps(workspace_id, 1)
    now = datetime.now(UTC)
    # Today (UTC, the workspace's timezone) whatever the hour the suite runs at: the board shows today's counts.
    at = max(now - timedelta(hours=1), now.replace(hour=0, minute=0, second=0, microsecond=0))
    activities = [item("email_sent", rep, at, f"L{i}", template="t1", industry="saas") for i in range(3)]
    activities.append(item("email_replied", rep, at + timedelta(seconds=30), "L0", template="t1"))
    activities.append(item("call", rep, at))

    ingested = _run("sales.ingest_activities", workspace_id, activities=activities)
    assert ingested.status == JobStatus.SUCCEEDED, ingested.error
    assert ingested.result == {"received": 5, "inserted": 5, "duplicates": 0}
    again = _run("sales.ingest_activities", workspace_id, activities=activities)
    assert again.result == {"received": 5, "inserted": 0, "duplicates": 5}

    synced = _run(
        "sales.sync_salesboard",
        workspace_id,
    )
    assert synced.status == JobStatus.SUCCEEDED, synced.error
    (board,) = synced.result["metrics"]
    assert (board["rep_id"], board["calls"], board["emails_sent"]) == (rep, 1, 3)
    assert synced.result["cached"] is False and synced.result["coached"] == 1
    cached = _run("sales.sync_salesboard", workspace_id, rep_id=rep)
    assert cached.result["cached"] is True

    learned = _run(
        "sales.learn_adaptive_ai",
        workspace_id,
    )
    assert learned.status == JobStatus.SUCCEEDED, learned.error
    assert learned.result["leads"] == 3 and learned.result["status"] == "learned"


def test_bad_activity_fails_once_with_the_index_and_the_reason(run_job, make_workspace) -> None:
    workspace_id, other = make_workspace(), make_workspace()
    (foreign,) = make_reps(other, 1)
    (rep,) = make_reps(workspace_id, 1)
    at = datetime.now(UTC) - timedelta(hours=1)
    job = _run(
        "sales.ingest_activities",
        workspace_id,
        activities=[item("call", rep, at), item("call", foreign, at)],
    )
    assert job.status == JobStatus.FAILED and job.attempts == 1
    assert "activities[1].rep_id" in (job.error or "")
    # Sent by name past the enqueue API's validation: the worker validates again and fails the job once.
    from workers.app import app

    shapeless = str(uuid.uuid4())
    app.send_task(
        "sales.ingest_activities",
        kwargs={"workspace_id": workspace_id, "activities": [{"type": "call"}]},
        task_id=shapeless,
    )
    failed = wait_for_job(shapeless)
    assert failed.status == JobStatus.FAILED and "activities.0.activity_id" in (failed.error or "")


def test_beat_fan_out_enqueues_one_sync_per_active_workspace_per_slot(run_job, make_workspace) -> None:
    active, quiet = make_workspace(), make_workspace()
    (rep,) = make_reps(active, 1)
    make_reps(quiet, 1)
    ingest(active, [item("call", rep, datetime.now(UTC) - timedelta(hours=1))])

    fan_out = run_job("sales.schedule_salesboard_syncs")
    assert fan_out.status == JobStatus.SUCCEEDED, fan_out.error
    with session_scope() as s:
        children = list(s.scalars(select(Job).where(Job.parent_id == fan_out.id)))
        by_workspace = {c.workspace_id: c.id for c in children}
    assert active in by_workspace and quiet not in by_workspace
    child = wait_for_job(by_workspace[active])
    assert child.task == "sales.sync_salesboard" and child.status == JobStatus.SUCCEEDED, child.error
    assert child.args == {"workspace_id": active, "force": True}
    assert child.result["metrics"][0]["rep_id"] == rep and child.result["cached"] is False

    # A second beat (or a redelivered fan-out) in the same 5-minute slot finds the child in the ledger; in the
    # next slot it enqueues a new one. Either way the slot decides, never the number of beats.
    second = run_job("sales.schedule_salesboard_syncs")
    with session_scope() as s:
        second_children = s.scalars(select(Job).where(Job.parent_id == second.id, Job.workspace_id == active)).all()
    if second.result["slot"] == fan_out.result["slot"]:
        assert second_children == []
    else:
        assert len(second_children) == 1 and second_children[0].id != child.id


def test_nightly_fan_out_skips_workspaces_that_disabled_learning(run_job, make_workspace) -> None:
    from models.sales import AdaptiveAIConfig

    learning, disabled = make_workspace(), make_workspace()
    for workspace_id in (learning, disabled):
        (rep,) = make_reps(workspace_id, 1)
        ingest(workspace_id, [item("email_sent", rep, datetime.now(UTC) - timedelta(days=3), template="t")])
    with session_scope() as s:
        s.add(AdaptiveAIConfig(workspace_id=disabled, enabled=False))
    fan_out = run_job("sales.schedule_adaptive_learning")
    with session_scope() as s:
        children = {c.workspace_id: c for c in s.scalars(select(Job).where(Job.parent_id == fan_out.id))}
    assert learning in children and disabled not in children
    assert wait_for_job(children[learning].id).status == JobStatus.SUCCEEDED


def test_the_beat_entries_name_registered_sales_tasks() -> None:
    from workers.app import app

    entries = {k: v for k, v in beat_schedule.BEAT_SCHEDULE.items() if k.startswith("sales.")}
    assert set(entries) == {"sales.schedule_salesboard_syncs", "sales.schedule_adaptive_learning"}
    for entry in entries.values():
        assert entry["task"] in app.tasks and entry["options"]["expires"] > 0


def test_the_fan_out_slot_is_the_five_minutes_a_beat_falls_in() -> None:
    from tasks.sales.fanout import five_minute_slot

    slot = five_minute_slot(datetime(2026, 3, 10, 9, 5, 0, tzinfo=UTC))
    assert slot == five_minute_slot(datetime(2026, 3, 10, 9, 9, 59, 999_999, tzinfo=UTC)) == "2026-03-10T09:05:00+00:00"
    assert five_minute_slot(datetime(2026, 3, 10, 9, 10, tzinfo=UTC)) != slot
    assert five_minute_slot(datetime(2026, 3, 10, 9, 4, 59, tzinfo=UTC)) != slot
