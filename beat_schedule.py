"""The periodic jobs: what runs, when, and why that cadence.

Every entry is a crontab (an interval schedule restarts its countdown whenever beat restarts) with an
`options.expires`, so an entry that sat in a backed-up queue past its next run is dropped rather than run twice
in a row. Only one beat may run; the jobs themselves are idempotent so a second beat changes nothing.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab


def _entry(task: str, schedule: crontab, expires: int, **kwargs: Any) -> dict[str, Any]:
    return {"task": task, "schedule": schedule, "kwargs": kwargs, "options": {"expires": expires}}


SYSTEM: dict[str, dict[str, Any]] = {
    # The outbox sweeper: a lost publish or an emptied Redis delays a job by at most a minute plus the grace.
    "system.redeliver_stale": _entry("system.redeliver_stale", crontab(minute="*"), expires=55),
}

BILLING: dict[str, dict[str, Any]] = {}

GROWTH: dict[str, dict[str, Any]] = {}

SALES: dict[str, dict[str, Any]] = {}

AI: dict[str, dict[str, Any]] = {}

WORKFLOWS: dict[str, dict[str, Any]] = {}

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {**SYSTEM, **BILLING, **GROWTH, **SALES, **AI, **WORKFLOWS}
