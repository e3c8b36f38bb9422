"""Flower in a real browser: the launcher's Flower command with basic auth, two real workers, jobs, headless Chromium.

The test installs Debian's chromium and chromium-driver with apt-get when they are missing (as CI can), starts
Flower exactly as `make run` does (workers.launcher builds the command), runs jobs on a prefork worker
(billing, analytics, default) and a threads worker (ai), then drives Flower's dashboard and task list and
asserts our worker names, task contract names and states are shown. Screenshots: tests/artifacts/flower/.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from models.core import JobStatus
from tests.support.env import ROOT
from tests.support.jobs import enqueue, wait_for_job
from tests.support.services import WorkerProcess, free_port, wait_until

ARTIFACTS = Path(ROOT) / "tests" / "artifacts" / "flower"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


def _chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installing Debian's packages first if they are missing."""

    def found() -> tuple[str, str] | None:
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        driver = shutil.which("chromedriver")
        return (browser, driver) if browser and driver else None

    paths = found()
    if paths is not None:
        return paths
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]
    if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:
        # Stale package lists on a fresh CI image: refresh them once and try again.
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600, check=True)
        subprocess.run(install, env=env, capture_output=True, timeout=600, check=True)
    paths = found()
    assert paths is not None, "apt-get installed chromium but chromium/chromedriver are not on PATH"
    return paths


@pytest.fixture(scope="module")
def flower(db_url: str) -> Iterator[tuple[str, str, list[WorkerProcess]]]:
    """Flower (with basic auth, as the launcher starts it) and the two workers; yields (url, credentials, workers)."""
    from workers.launcher import children
    from workers.settings import Settings

    credentials = f"ops-{secrets.token_hex(3)}:{secrets.token_urlsafe(12)}"
    port = free_port()
    settings = Settings(flower_port=port, flower_basic_auth=credentials)
    (command,) = [child.argv for child in children(settings) if child.name == "flower"]
    assert f"--basic-auth={credentials}" in command

    suffix = uuid.uuid4().hex[:6]
    main = WorkerProcess(
        queues=["billing", "analytics", "default"], pool="prefork", concurrency=2, name=f"jobs-{suffix}"
    )
    ai = WorkerProcess(queues=["ai"], pool="threads", concurrency=4, name=f"jobs-ai-{suffix}")
    log_path = os.path.join(tempfile.gettempdir(), f"artisan-flower-{suffix}.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "FLOWER_BASIC_AUTH": credentials},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        # Flower first, so it sees every event of the workers and the jobs from the start.
        wait_until(lambda: _status(url + "/healthcheck") == 200, 60, 0.2, "Flower to answer")
        main.start(wait=False)
        ai.start(wait=False)
        main.wait_ready()
        ai.wait_ready()
        yield url, credentials, [main, ai]
    finally:
        main.stop()
        ai.stop()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _status(url: str, auth: tuple[str, str] | None = None) -> int:
    try:
        return httpx.get(url, auth=auth, timeout=5).status_code
    except httpx.HTTPError:
        return 0


@pytest.fixture(scope="module")
def browser(flower: tuple[str, str, list[WorkerProcess]]) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = _chromium()
    _, credentials, _ = flower
    profile = tempfile.mkdtemp(prefix="artisan-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        driver.set_page_load_timeout(60)
        # Basic auth on every request the pages make (credentials in the URL are not sent to XHRs).
        token = base64.b64encode(credentials.encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _page_shows(driver: object, *texts: str) -> Callable[[], bool]:
    def check() -> bool:
        source = driver.page_source  # type: ignore[attr-defined]
        return all(t in source for t in texts)

    return check


def test_flower_shows_both_workers_and_every_task_by_contract_name_with_its_state(
    flower: tuple[str, str, list[WorkerProcess]], browser: object, make_workspace: Callable[..., int]
) -> None:
    url, credentials, workers = flower
    user, password = credentials.split(":", 1)
    workspace_id = make_workspace(plan="enterprise")

    jobs = {
        "system.ping": enqueue("system.ping", {"message": "flower"}),
        "billing.check_quotas": enqueue("billing.check_quotas", {}),
        "growth.detect_expansion": enqueue("growth.detect_expansion", {}),
        "ai.safety_stats": enqueue("ai.safety_stats", {"workspace_id": workspace_id}, workspace_id=workspace_id),
    }
    for name, job_id in jobs.items():
        assert wait_for_job(job_id, timeout=90).status == JobStatus.SUCCEEDED, name

    # Flower's own API answers only with the credentials; /healthcheck (and /metrics) are exempt from auth.
    assert _status(url + "/api/workers") == 401
    assert _status(url + "/api/workers", auth=(user, password)) == 200
    assert _status(url + "/healthcheck") == 200

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver = browser
    hostnames = [w.hostname for w in workers]

    driver.get(url + "/")  # type: ignore[attr-defined]
    wait_until(_page_shows(driver, *hostnames), 60, 0.5, "both workers on Flower's dashboard")
    driver.refresh()  # type: ignore[attr-defined]
    wait_until(_page_shows(driver, *hostnames), 60, 0.5, "both workers after a refresh")
    driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))  # type: ignore[attr-defined]
    dashboard = driver.page_source  # type: ignore[attr-defined]
    assert "Online" in dashboard or "online" in dashboard

    driver.get(url + "/tasks")  # type: ignore[attr-defined]
    wait_until(_page_shows(driver, *jobs, "SUCCESS"), 60, 0.5, "our tasks in Flower's task list")
    driver.save_screenshot(str(ARTIFACTS / "tasks.png"))  # type: ignore[attr-defined]
    listing = driver.page_source  # type: ignore[attr-defined]
    for job_id in jobs.values():
        assert str(job_id) in listing

    # One task's page: its contract name, state, the worker that ran it and its runtime.
    ping = str(jobs["system.ping"])
    driver.get(f"{url}/task/{ping}")  # type: ignore[attr-defined]
    wait_until(_page_shows(driver, "system.ping", "SUCCESS", workers[0].hostname), 60, 0.5, "the task page")
    driver.save_screenshot(str(ARTIFACTS / "task.png"))  # type: ignore[attr-defined]
    assert "Runtime" in driver.page_source or "runtime" in driver.page_source  # type: ignore[attr-defined]
    for name in ("dashboard.png", "tasks.png", "task.png"):
        assert (ARTIFACTS / name).stat().st_size > 1000
