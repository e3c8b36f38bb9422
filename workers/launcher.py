"""The dev launcher behind `make run`: API, two workers, beat and Flower as one supervised foreground group.

SIGINT or SIGTERM stops every child; if one child dies, the launcher says which and stops the others.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from workers.settings import Settings, get_settings


@dataclass(frozen=True)
class Child:
    name: str
    argv: list[str]


def children(settings: Settings) -> list[Child]:
    py = sys.executable
    celery = [py, "-m", "celery", "-A", "workers.app"]
    flower = [*celery, "flower", f"--port={settings.flower_port}", "--address=127.0.0.1"]
    if settings.flower_basic_auth:
        flower.append(f"--basic-auth={settings.flower_basic_auth}")
    return [
        Child(
            "api", [py, "-m", "uvicorn", "api.main:app", "--host", settings.api_host, "--port", str(settings.api_port)]
        ),
        Child(
            "worker",
            [
                *celery,
                "worker",
                "-Q",
                "billing,analytics,default",
                "-P",
                "prefork",
                "-n",
                "worker@%h",
                "--loglevel",
                "INFO",
            ],
        ),
        # LLM calls wait on the network: threads give concurrency without a process per call.
        Child(
            "worker-ai",
            [*celery, "worker", "-Q", "ai", "-P", "threads", "-c", "8", "-n", "worker-ai@%h", "--loglevel", "INFO"],
        ),
        Child("beat", [*celery, "beat", "--loglevel", "INFO", "-s", os.path.join(_state_dir(), "celerybeat-schedule")]),
        Child("flower", flower),
    ]


def _state_dir() -> str:
    path = os.path.join(os.getcwd(), ".run")
    os.makedirs(path, exist_ok=True)
    return path


class Supervisor:
    def __init__(self, specs: list[Child], grace_seconds: float = 15.0) -> None:
        self.specs = specs
        self.grace_seconds = grace_seconds
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping = False

    def _say(self, message: str) -> None:
        print(f"[launcher] {message}", file=sys.stderr, flush=True)

    def start(self) -> None:
        for spec in self.specs:
            # Each child leads its own process group so a signal reaches its pool processes too.
            self.procs[spec.name] = subprocess.Popen(spec.argv, start_new_session=True)
            self._say(f"started {spec.name} (pid {self.procs[spec.name].pid})")

    def stop(self, reason: str) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._say(f"stopping all children: {reason}")
        for proc in self.procs.values():
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        for name, proc in self.procs.items():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                self._say(f"{name} did not stop in {self.grace_seconds:.0f} s: killing it")
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
            else:
                # Pool processes of a worker that exited must not outlive it.
                _signal_group(proc, signal.SIGKILL)

    def run(self) -> int:
        def on_signal(signum: int, _frame: object) -> None:
            raise _Stop(signal.Signals(signum).name)

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            self.start()
            while True:
                for name, proc in self.procs.items():
                    code = proc.poll()
                    if code is not None:
                        self._say(f"{name} exited with code {code}")
                        self.stop(f"{name} died")
                        return 1
                time.sleep(0.5)
        except _Stop as stop:
            self.stop(f"received {stop}")
            return 0
        finally:
            self.stop("launcher exiting")


class _Stop(Exception):
    pass


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def main() -> int:
    return Supervisor(children(get_settings())).run()
