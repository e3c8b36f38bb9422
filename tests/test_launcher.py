"""`python -m workers run` (behind `make run`): API, two workers, beat and Flower as one supervised group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import psutil

from models.core import JobStatus
from tests.support.env import ROOT
from tests.support.jobs import enqueue, wait_for_job
from tests.support.services import free_port, wait_until


def _start(api_port: int, flower_port: int, log_path: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "API_PORT": str(api_port), "FLOWER_PORT": str(flower_port), "FLOWER_BASIC_AUTH": "ops:secret"}
    # A file, not a pipe: nobody reads a pipe while the group runs, and a full pipe would block the children.
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "workers", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _answers(url: str, **kwargs: object) -> bool:
    try:
        return httpx.get(url, timeout=2, **kwargs).status_code == 200
    except httpx.HTTPError:
        return False


def _family(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    return psutil.Process(proc.pid).children(recursive=True)


def _all_gone(processes: list[psutil.Process]) -> bool:
    return not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes)


def test_run_starts_everything_and_sigterm_stops_every_child(db_url: str, tmp_path) -> None:
    api_port, flower_port = free_port(), free_port()
    launcher = _start(api_port, flower_port, str(tmp_path / "launcher.log"))
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{api_port}/healthz"), 90, 0.3, "the API")
        wait_until(
            lambda: _answers(f"http://127.0.0.1:{flower_port}/api/workers", auth=("ops", "secret")), 90, 0.3, "Flower"
        )
        assert httpx.get(f"http://127.0.0.1:{flower_port}/api/workers", timeout=5).status_code == 401
        # Both workers serve: a default-queue job and an ai-queue worker answering to ping.
        assert (
            wait_for_job(enqueue("system.ping", {"message": "via make run"}), timeout=90).status == JobStatus.SUCCEEDED
        )
        family = _family(launcher)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        for part in ("uvicorn", "worker -Q billing,analytics,default", "worker -Q ai", " beat ", " flower "):
            assert part in names, part
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) == 0
        wait_until(lambda: _all_gone(family), 30, 0.2, "every child to stop")
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)


def test_when_one_child_dies_the_launcher_names_it_and_stops_the_others(db_url: str, tmp_path) -> None:
    api_port, flower_port = free_port(), free_port()
    launcher = _start(api_port, flower_port, str(tmp_path / "launcher.log"))
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{api_port}/healthz"), 90, 0.3, "the API")
        family = _family(launcher)
        beat = next(p for p in psutil.Process(launcher.pid).children() if " beat " in " ".join(p.cmdline()) + " ")
        beat.kill()
        assert launcher.wait(timeout=60) == 1
        output = (tmp_path / "launcher.log").read_text(errors="replace")
        assert "beat exited" in output and "stopping all children" in output
        wait_until(lambda: _all_gone(family), 30, 0.2, "every child to stop")
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
