"""The project's Celery app plus probe tasks, for `celery worker` subprocesses in tests (`WorkerProcess(app=...)`)."""

from __future__ import annotations

import time

from billiard.exceptions import SoftTimeLimitExceeded
from pydantic import Field

from workers.app import app
from workers.contracts import TaskArgs, task_args
from workers.jobtask import JobTask

__all__ = ["app"]


@task_args("tests.stubborn")
class StubbornArgs(TaskArgs):
    api_visible = False
    seconds: float = Field(ge=0, le=120)


@app.task(name="tests.stubborn", base=JobTask, bind=True, max_retries=0)
def stubborn(self: JobTask, args: StubbornArgs) -> dict[str, float]:
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            # Like a body that swallows the soft limit, or one stuck in C code that never sees it: only the hard
            # limit, which kills the pool process, ends this run.
            continue
    return {"seconds": args.seconds}
