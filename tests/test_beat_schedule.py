"""The beat schedule loads, and every entry is a crontab with an expiry naming a registered task."""

from __future__ import annotations

from celery.schedules import crontab

from beat_schedule import BEAT_SCHEDULE
from workers.app import app


def test_every_entry_is_a_crontab_with_expires_for_a_registered_task() -> None:
    assert "system.redeliver_stale" in BEAT_SCHEDULE
    for name, entry in BEAT_SCHEDULE.items():
        assert isinstance(entry["schedule"], crontab), name
        expires = entry["options"]["expires"]
        assert isinstance(expires, int | float) and expires > 0, name
        assert entry["task"] in app.tasks, f"{name} names unknown task {entry['task']}"


def test_celery_beat_reads_the_schedule_from_celeryconfig() -> None:
    assert app.conf.beat_schedule == BEAT_SCHEDULE
    scheduler_entries = {name: app.conf.beat_schedule[name]["task"] for name in app.conf.beat_schedule}
    assert scheduler_entries["system.redeliver_stale"] == "system.redeliver_stale"


def test_an_expiry_is_shorter_than_the_gap_to_the_next_run() -> None:
    # A run that waited in a backed-up queue past its next scheduled time is dropped, not run twice in a row.
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 1, 1, tzinfo=UTC)
    for name, entry in BEAT_SCHEDULE.items():
        schedule: crontab = entry["schedule"]
        gap = schedule.remaining_estimate(now - timedelta(seconds=1))
        first = now - timedelta(seconds=1) + gap
        second_gap = schedule.remaining_estimate(first)
        assert entry["options"]["expires"] <= max(second_gap.total_seconds(), 60), name
