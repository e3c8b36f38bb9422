"""Separate worker processes for tests that kill one, and free ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence

import psutil
import redis

from tests.support.env import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.1, message: str = "condition"):
    """Poll until predicate() is truthy; returns its value or raises TimeoutError naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {message}")
        time.sleep(interval)


class WorkerProcess:
    """A `celery worker` subprocess on the test's broker and database (inherits DATABASE_URL and REDIS_URL)."""

    def __init__(
        self,
        queues: Sequence[str] = ("billing", "analytics", "default", "ai"),
        pool: str = "prefork",
        concurrency: int = 1,
        name: str | None = None,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        app: str = "workers.app",
    ) -> None:
        self.app = app
        self.queues = list(queues)
        self.pool = pool
        self.concurrency = concurrency
        self.name = name or f"test-{uuid.uuid4().hex[:8]}"
        self.extra_args = list(extra_args)
        self.env = {**os.environ, **(env or {})}
        self.log_path = os.path.join(tempfile.gettempdir(), f"artisan-{self.name}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def hostname(self) -> str:
        return f"{self.name}@{socket.gethostname()}"

    def start(self, wait: bool = True, timeout: float = 90.0) -> WorkerProcess:
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            self.app,
            "worker",
            "-Q",
            ",".join(self.queues),
            "-P",
            self.pool,
            "-c",
            str(self.concurrency),
            "-n",
            self.hostname,
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            *self.extra_args,
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            with open(self.log_path, errors="replace") as fh:
                return " ready." in fh.read()

        wait_until(ready, timeout, 0.2, f"worker {self.name} to be ready")
        if self.pool == "prefork":
            wait_until(lambda: len(self.pool_pids()) >= self.concurrency, timeout, 0.1, "pool processes")

    def log_tail(self, lines: int = 60) -> str:
        with open(self.log_path, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])

    def log_text(self) -> str:
        with open(self.log_path, errors="replace") as fh:
            return fh.read()

    def pool_pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            return [child.pid for child in psutil.Process(self.proc.pid).children(recursive=False)]
        except psutil.NoSuchProcess:
            return []

    def kill_pool_process(self) -> int:
        """SIGKILL one pool child (the process running the task); the worker's parent survives and replaces it."""
        pids = self.pool_pids()
        if not pids:
            raise RuntimeError("no pool process to kill")
        os.kill(pids[0], signal.SIGKILL)
        return pids[0]

    def kill(self) -> None:
        """SIGKILL the whole worker: parent and children, as a lost host would."""
        if self.proc is None:
            return
        try:
            family = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        for proc in [psutil.Process(self.proc.pid), *family] if self.proc.poll() is None else family:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            family = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        for proc in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()

    def __enter__(self) -> WorkerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *_: object) -> None:
        self.stop()


class RedisServer:
    """A private redis-server on a free port, without persistence (a restart empties it): tests that stop,
    restart or FLUSHALL a broker use this one, never the shared Redis."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="artisan-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen([*argv, "--dir", self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)

        def answers() -> bool:
            with contextlib.suppress(redis.RedisError):
                return bool(client.ping())
            return False

        wait_until(answers, 30, 0.05, f"redis-server on port {self.port}")
        client.close()
        return self

    def stop(self) -> None:
        """A clean shutdown (SIGTERM)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.proc = None

    def kill(self) -> None:
        """A crash (SIGKILL)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
