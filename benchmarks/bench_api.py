"""POST /v1/jobs (auth, validation, rate limit, ledger write, publish) against a bare FastAPI endpoint that only
calls send_task: both under uvicorn, one process each, loaded by wrk from another process, in the same run.

    python -m benchmarks api

Knobs: BENCH_API_SECONDS (10 per measurement), BENCH_API_CONNECTIONS (32), BENCH_API_ROUNDS (2; the best
round of each side is reported), BENCH_DATABASE / BENCH_REDIS_DB (common.bench_environment).
wrk comes from Debian (`apt-get install -y wrk`, done here if it is missing and we are root).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import httpx
import redis
from sqlalchemy import func, insert, select, text

from benchmarks.common import bench_environment, report
from tests.support.env import ROOT
from tests.support.services import free_port, wait_until

SUITE = "api"
SECONDS = float(os.environ.get("BENCH_API_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_API_CONNECTIONS", "32"))
ROUNDS = int(os.environ.get("BENCH_API_ROUNDS", "2"))
WARMUP_SECONDS = 2.0
BODY = {"task": "system.ping", "args": {"message": "bench"}}

# wrk prints one JSON line from its done() hook: totals and latency percentiles (microseconds).
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth ~= nil and auth ~= "" then wrk.headers["Authorization"] = auth end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class Run:
    requests: int
    ok: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.ok / self.seconds


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is needed as the load generator: apt-get install -y wrk")
    return found


class Server:
    def __init__(self, app: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-api-{self.port}-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

        def up() -> bool:
            if self.proc.poll() is not None:
                with open(self.log.name) as log:
                    raise RuntimeError(f"{app} exited: {log.read()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.url}/openapi.json", timeout=2).status_code == 200
            return False

        wait_until(up, 90, 0.2, f"{app} to listen")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()
        os.unlink(self.log.name)


def load(wrk: str, script: str, url: str, seconds: float, auth: str | None) -> Run:
    env = {**os.environ, "BENCH_BODY": json.dumps(BODY), "BENCH_AUTH": auth or ""}
    out = subprocess.run(
        [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", script,
         f"{url}/v1/jobs"],
        env=env, capture_output=True, text=True, check=True, timeout=seconds + 60,
    )  # fmt: skip
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("{"))
    data = json.loads(line)
    ok = data["requests"] - data["non2xx"]
    return Run(data["requests"], ok, data["duration_us"] / 1e6, data["p50_us"] / 1000, data["p99_us"] / 1000)


def drain(redis_url: str, expected: int) -> int:
    """Wait until at least `expected` messages are in the default queue and it stops growing (requests still in
    flight when wrk stopped are answered too), then clear it; returns how many were published."""
    client = redis.Redis.from_url(redis_url)
    wait_until(lambda: client.llen("default") >= expected, 60, 0.1, f"{expected} messages in the queue")
    previous = -1
    while (published := int(client.llen("default"))) != previous:
        previous = published
        time.sleep(0.5)
    client.delete("default")
    return published


def ledger_rows() -> int:
    from models.core import Job
    from workers.db import session_scope

    with session_scope() as s:
        return int(s.execute(select(func.count()).select_from(Job)).scalar_one())


def where_the_time_goes(workspace_key: str, workspace_id: int) -> list[tuple[str, float]]:
    """Microseconds per call of each step of POST /v1/jobs, timed in this process (no HTTP, no contention)."""
    from pydantic import TypeAdapter
    from starlette.responses import Response

    from api.deps import authenticate, enforce_rate_limit, token_bucket
    from api.outbox import BrokerLayout, MessageEncoder, publish_pipelined
    from api.schemas import build_enqueue_model
    from api.store import ledger
    from workers.app import app
    from workers.ledger import Publishable, validate_args

    n = 2000
    adapter = TypeAdapter(build_enqueue_model())
    raw = json.dumps(BODY).encode()
    client = redis.Redis.from_url(app.conf.broker_url)
    encoder, layout = MessageEncoder(app), BrokerLayout(app)

    async def timed_async() -> dict[str, float]:
        await ledger.start()
        await token_bucket().start()
        await authenticate(workspace_key)
        results: dict[str, float] = {}
        started = time.perf_counter()
        for _ in range(n):
            await authenticate(workspace_key)
        results["auth (cached key)"] = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(n):
            await enforce_rate_limit(workspace_id, Response())
        results["rate limit (Lua token bucket, 1 Redis round trip)"] = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(n):
            await ledger.record(
                "system.ping", {"message": "x"}, workspace_id=workspace_id, idempotency_key=None, run_at=None
            )
        results["ledger INSERT (autocommit, 1 PostgreSQL round trip + fsync)"] = time.perf_counter() - started
        await token_bucket().close()
        await ledger.close()
        return results

    steps = asyncio.run(timed_async())
    started = time.perf_counter()
    for _ in range(n):
        body = adapter.validate_json(raw)
        validate_args(body.task, body.args.model_dump(mode="json", exclude_unset=True))
    steps["validation (discriminated union + the task's model)"] = time.perf_counter() - started
    jobs = [Publishable(__import__("uuid").uuid4(), "system.ping", {"message": "x"}) for _ in range(n)]
    started = time.perf_counter()
    for i in range(0, n, 100):
        publish_pipelined(client, encoder, layout, jobs[i : i + 100])
    steps["relay publish, batches of 100 (message + sent event)"] = time.perf_counter() - started
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for job in jobs[:500]:
            app.send_task(job.task, kwargs=job.args, task_id=str(job.id), producer=producer)
    steps["send_task, for comparison (what the bare endpoint pays)"] = (time.perf_counter() - started) * n / 500
    client.delete("default")
    return [(name, seconds / n * 1e6) for name, seconds in steps.items()]


def main() -> None:
    wrk = ensure_wrk()
    with bench_environment(SUITE) as isolated:
        from api.keys import generate_key
        from models.core import ApiKey, Subscription, SubscriptionStatus, Workspace
        from workers.db import session_scope

        now = time.time()
        key = generate_key()
        with session_scope() as s:
            # The rate limit is checked on every request (its cost is measured), but set high enough not to refuse.
            s.execute(
                text("UPDATE plans SET api_rate_per_second = 1000000, api_burst = 1000000 WHERE code = 'enterprise'")
            )
            workspace_id = s.execute(insert(Workspace).values(name="bench-api").returning(Workspace.id)).scalar_one()
            start = func.now()
            s.execute(
                insert(Subscription).values(
                    workspace_id=workspace_id, plan_code="enterprise", status=SubscriptionStatus.ACTIVE,
                    started_at=start, billing_anchor_day=1, current_period_start=start,
                    current_period_end=text("now() + interval '30 days'"),
                )
            )  # fmt: skip
            s.execute(insert(ApiKey).values(workspace_id=workspace_id, prefix=key.prefix, secret_hash=key.secret_hash))
        auth = f"Bearer {key.plaintext}"
        env = {**os.environ, "DATABASE_URL": isolated.database_url, "REDIS_URL": isolated.redis_url}
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)  # noqa: SIM115
        script.write(WRK_SCRIPT)
        script.close()
        ours_server = Server("api.main:app", env)
        bare_server = Server("benchmarks.bare_api:app", env)
        best: dict[str, Run] = {}
        try:
            for server, key_header in ((bare_server, None), (ours_server, auth)):
                load(wrk, script.name, server.url, WARMUP_SECONDS, key_header)
            drain(isolated.redis_url, 0)
            with session_scope() as s:
                s.execute(text("DELETE FROM jobs"))
            for _ in range(ROUNDS):
                for name, server, key_header in (("bare", bare_server, None), ("ours", ours_server, auth)):
                    rows_before = ledger_rows()
                    run = load(wrk, script.name, server.url, SECONDS, key_header)
                    published = drain(isolated.redis_url, run.ok)
                    assert published >= run.ok, f"{name}: {run.ok} accepted, only {published} published"
                    if name == "ours":
                        written = ledger_rows() - rows_before
                        assert written == published, f"ours: {written} ledger rows but {published} published"
                    print(
                        f"  {name}: {run.rps:,.0f} req/s, p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms "
                        f"({run.ok} accepted, {run.requests - run.ok} refused, all {published} published)",
                        flush=True,
                    )
                    if name not in best or run.rps > best[name].rps:
                        best[name] = run
            print(f"  ledger rows written by ours: {ledger_rows()}")
        finally:
            ours_server.stop()
            bare_server.stop()
            os.unlink(script.name)
        ours, bare = best["ours"], best["bare"]
        setup = (
            f"uvicorn 1 process each (uvloop, httptools), wrk -t1 -c{CONNECTIONS}, {SECONDS:.0f} s x {ROUNDS} rounds, "
            f"best round; 2 cores shared with PostgreSQL and Redis"
        )
        report(
            SUITE,
            setup,
            ours=("POST /v1/jobs: auth + validation + rate limit + ledger + relay publish", ours.rps, "req/s"),
            bare=("FastAPI endpoint calling send_task", bare.rps, "req/s"),
        )
        print(f"  latency ours: p50 {ours.p50_ms:.2f} ms, p99 {ours.p99_ms:.2f} ms")
        print(f"  latency bare: p50 {bare.p50_ms:.2f} ms, p99 {bare.p99_ms:.2f} ms")
        print("  where the time goes (one call, in process, no contention):")
        for step, micros in where_the_time_goes(key.plaintext, workspace_id):
            print(f"    {micros:8.1f} us  {step}")
        print(f"  total bench time {time.time() - now:.0f} s")


if __name__ == "__main__":
    main()
