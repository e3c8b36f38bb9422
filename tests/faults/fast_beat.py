"""`celery beat` with the real schedule entries at a drill's cadence: `python -m tests.faults.fast_beat`.

The fault drills cannot wait for crontab minutes: this runs the same beat service (celery.apps.beat.Beat) on
the same app, with the named entries (their task, kwargs and options from beat_schedule.py when present)
firing every `--interval` seconds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from datetime import timedelta
from typing import Any


def entries(tasks: list[str], interval: float) -> dict[str, dict[str, Any]]:
    from beat_schedule import BEAT_SCHEDULE

    by_task = {entry["task"]: entry for entry in BEAT_SCHEDULE.values()}
    result: dict[str, dict[str, Any]] = {}
    for task in tasks:
        entry = dict(by_task.get(task, {"task": task, "kwargs": {}, "options": {}}))
        entry["schedule"] = timedelta(seconds=interval)
        result[task] = entry
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--task", action="append", required=True, help="a periodic task to send (repeatable)")
    parser.add_argument("--schedule-file", default=None)
    args = parser.parse_args()

    from workers.app import app

    app.conf.beat_schedule = entries(args.task, args.interval)
    schedule_file = args.schedule_file or os.path.join(tempfile.mkdtemp(prefix="fast-beat-"), "schedule")
    app.Beat(schedule=schedule_file, max_interval=args.interval, loglevel="INFO").run()


if __name__ == "__main__":
    main()
