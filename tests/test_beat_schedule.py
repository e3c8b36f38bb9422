"""The beat schedule loads, and every entry is a crontab with an expiry naming a registered task."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

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


def _run_minutes(schedule: crontab, days: int = 8) -> list[int]:
    """Minutes (from a Sunday midnight UTC) at which the crontab fires, over `days` days."""
    start = datetime(2026, 1, 4, tzinfo=UTC)  # a Sunday: crontab counts day_of_week from Sunday = 0
    runs = []
    for minute in range(days * 24 * 60):
        at = start + timedelta(minutes=minute)
        if (
            at.minute in schedule.minute
            and at.hour in schedule.hour
            and (at.isoweekday() % 7) in schedule.day_of_week
            and at.day in schedule.day_of_month
            and at.month in schedule.month_of_year
        ):
            runs.append(minute)
    return runs


def test_an_expiry_is_shorter_than_the_gap_between_runs() -> None:
    # A run that waited in a backed-up queue past its next scheduled time is dropped, not run twice in a row.
    for name, entry in BEAT_SCHEDULE.items():
        runs = _run_minutes(entry["schedule"])
        assert len(runs) >= 1, name
        shortest_gap_seconds = min((b - a for a, b in itertools.pairwise(runs)), default=7 * 24 * 60) * 60
        assert entry["options"]["expires"] < shortest_gap_seconds, name
