"""The operator CLI against real workers: failed jobs and replays, queues, workers, backfills, bad arguments.

Worker subprocesses only (this module never uses the in-process worker fixture).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from models.core import Job, JobStatus
from models.operations import BackfillRun
from tests.support.jobs import enqueue, job_row, wait_for_job
from tests.support.services import WorkerProcess, free_port
from workers.cli import main as cli
from workers.db import session_scope

TRANSCRIPT = "Dana Reyes: We need SSO before we can sign.\nSam Cole: I'll send the security whitepaper by Friday."


def _api_key(capsys: pytest.CaptureFixture[str], workspace: str) -> str:
    assert cli(["create-api-key", "--workspace", workspace]) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_jobs_that_exhaust_retries_are_failed_visible_in_api_and_cli_and_replayable(
    db_url: str, make_workspace: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"ops-{uuid.uuid4().hex[:8]}"
    workspace_id = make_workspace(plan="enterprise", name=name)
    # The LLM endpoint is down (nothing listens there): every attempt fails, the job base retries, then gives up.
    outage = {
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        "LLM_MAX_ATTEMPTS": "1",
        "LLM_TIMEOUT_SECONDS": "2",
    }
    args = {"workspace_id": workspace_id, "transcript": TRANSCRIPT, "doc_type": "faq"}
    with WorkerProcess(queues=["ai"], pool="threads", concurrency=2, env=outage):
        ids = [enqueue("ai.generate_knowledge_document", args, workspace_id=workspace_id) for _ in range(2)]
        failed = [wait_for_job(job_id, timeout=90) for job_id in ids]
    for job in failed:
        assert job.status == JobStatus.FAILED
        assert job.attempts == 4, "max_retries=3: the first run and three retries"
        assert (job.error or "").startswith("gave up after 4 attempts: Transient")

    from api.main import app

    key = _api_key(capsys, name)
    with TestClient(app) as client:
        shown = client.get(f"/v1/jobs/{ids[0]}", headers={"Authorization": f"Bearer {key}"}).json()
        listed = client.get("/v1/jobs?status=failed", headers={"Authorization": f"Bearer {key}"}).json()
    assert shown["status"] == "failed" and shown["attempts"] == 4 and "gave up" in shown["error"]
    assert {str(i) for i in ids} <= {item["id"] for item in listed["items"]}

    assert cli(["failed-jobs", "--task", "ai.generate_knowledge_document", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert {str(i) for i in ids} <= set(rows)
    assert all(rows[str(i)]["attempts"] == 4 and "gave up" in rows[str(i)]["error"] for i in ids)
    assert cli(["failed-jobs", "--workspace-id", str(workspace_id)]) == 0
    table = capsys.readouterr().out
    assert str(ids[0]) in table and "gave up after 4 attempts" in table

    # The outage is over (the offline engine here): replay one job by id, then every failed job of the task.
    with WorkerProcess(queues=["ai"], pool="threads", concurrency=2):
        scope = ["--task", "ai.generate_knowledge_document", "--workspace-id", str(workspace_id)]
        assert cli(["replay", *scope, "--dry-run"]) == 0
        assert "2 failed job(s) would be replayed" in capsys.readouterr().out
        assert job_row(ids[0]).status == JobStatus.FAILED
        assert cli(["replay", str(ids[0])]) == 0
        assert f"replayed {ids[0]}" in capsys.readouterr().out
        assert wait_for_job(ids[0], timeout=90).status == JobStatus.SUCCEEDED
        assert cli(["replay", *scope]) == 0
        out = capsys.readouterr().out
        assert f"replayed {ids[1]}" in out and "1 job(s) replayed" in out
        replayed = [wait_for_job(job_id, timeout=90) for job_id in ids]
    for job in replayed:
        assert job.status == JobStatus.SUCCEEDED and job.attempts == 1 and job.error is None
        assert job.result is not None

    assert cli(["replay", str(ids[0])]) == 2
    assert "is succeeded; only failed jobs can be replayed" in capsys.readouterr().err


def test_queues_and_workers_show_depths_and_the_live_workers(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["workers", "--timeout", "1"]) == 1
    assert "no worker answered" in capsys.readouterr().err

    assert cli(["queues", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)["queues"]["analytics"]
    ids = [enqueue("growth.detect_expansion", {}) for _ in range(3)]
    assert cli(["queues", "--json"]) == 0
    depths = json.loads(capsys.readouterr().out)
    assert depths["queues"]["analytics"] == before + 3
    assert set(depths["queues"]) == {"billing", "analytics", "default", "ai"}

    with WorkerProcess(queues=["analytics", "default"], concurrency=2) as worker:
        for job_id in ids:
            assert wait_for_job(job_id, timeout=60).status == JobStatus.SUCCEEDED
        assert cli(["workers", "--json", "--timeout", "3"]) == 0
        (status,) = [w for w in json.loads(capsys.readouterr().out) if w["name"] == worker.hostname]
        assert status["queues"] == ["analytics", "default"]
        assert status["pool"] == "TaskPool" and status["concurrency"] == 2
        assert status["processed"] >= 3
        assert cli(["workers"]) == 0
        assert worker.hostname in capsys.readouterr().out
    assert cli(["queues"]) == 0
    out = capsys.readouterr().out
    assert "analytics" in out and "in flight" in out


def test_a_backfill_runs_in_batches_resumes_after_an_interruption_and_enqueues_each_unit_once(
    db_url: str, make_workspace: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    workspaces = [make_workspace(plan="starter") for _ in range(5)]
    today = datetime.now(UTC).date()
    period = ["--from", str(today - timedelta(days=1)), "--to", str(today + timedelta(days=1))]

    assert cli(["backfill", "churn", *period, "--batch-size", "2", "--max-batches", "1", "--no-progress"]) == 0
    assert "paused after 1 batch(es)" in capsys.readouterr().out
    with session_scope() as session:
        run = session.execute(
            select(BackfillRun).where(BackfillRun.kind == "churn", BackfillRun.period_end == today + timedelta(days=1))
        ).scalar_one()
        run_id, first_cursor = run.id, run.cursor
        assert run.enqueued == 2 and run.batches == 1 and run.finished_at is None

    # The re-run resumes after the checkpoint, with a progress bar.
    assert cli(["backfill", "churn", *period, "--batch-size", "2"]) == 0
    captured = capsys.readouterr()
    assert "finished" in captured.out and "backfill churn" in captured.err
    assert cli(["backfill", "churn", *period]) == 0
    assert "already finished" in capsys.readouterr().out

    with session_scope() as session:
        run = session.get_one(BackfillRun, run_id)
        jobs = (
            session.execute(select(Job).where(Job.idempotency_key.like(f"backfill:{run_id}:churn:%"))).scalars().all()
        )
        for job in jobs:
            session.expunge(job)
        subscribed = session.execute(
            select(func.count(func.distinct(Job.workspace_id))).where(Job.id.in_([j.id for j in jobs]))
        ).scalar_one()
    assert run.finished_at is not None and run.cursor > first_cursor
    assert len(jobs) == run.enqueued == subscribed
    assert sorted(j.args["workspace_id"] for j in jobs) == sorted({j.workspace_id for j in jobs})
    assert set(workspaces) <= {j.workspace_id for j in jobs}
    assert all(j.task == "growth.score_churn_risk" for j in jobs)

    # The backfill's jobs are real jobs: a worker runs them.
    with WorkerProcess(queues=["analytics"], concurrency=2):
        for job in jobs:
            finished = wait_for_job(job.id, timeout=90)
            assert finished.status == JobStatus.SUCCEEDED, finished.error

    # Salesboards: one forced sync per workspace with activity in the period (other tests may have added some).
    assert cli(["backfill", "salesboards", *period, "--no-progress"]) == 0
    reported = re.search(r"(\d+) job\(s\) enqueued", capsys.readouterr().out)
    assert reported is not None
    with session_scope() as session:
        sales_run = session.execute(
            select(BackfillRun).where(
                BackfillRun.kind == "salesboards", BackfillRun.period_end == today + timedelta(days=1)
            )
        ).scalar_one()
        sales_jobs = session.execute(
            select(Job.task, Job.args).where(Job.idempotency_key.like(f"backfill:{sales_run.id}:salesboards:%"))
        ).all()
    assert len(sales_jobs) == int(reported.group(1)) == sales_run.enqueued
    assert all(task == "sales.sync_salesboard" and args["force"] is True for task, args in sales_jobs)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["replay"], "give either one JOB_ID or --task"),
        (["replay", "not-a-uuid"], "is not a job id"),
        (["replay", str(uuid.uuid4())], "no job"),
        (["replay", "--task", "no.such_task"], "unknown task 'no.such_task'"),
        (["failed-jobs", "--limit", "0"], "must be at least 1"),
        (["failed-jobs", "--task", "billing.nope"], "unknown task 'billing.nope'"),
        (["dead-letters", "--reason", "sad"], "invalid choice"),
        (["backfill", "churn", "--from", "2026-02-01", "--to", "2026-01-01"], "must be after --from"),
        (["backfill", "churn", "--from", "2026-13-01", "--to", "2026-12-01"], "is not a date"),
        (["backfill", "invoices", "--from", "2026-01-01", "--to", "2026-02-01"], "invalid choice"),
        (["workers", "--timeout", "-1"], "must be above 0"),
        (["recover-orphans", "--limit", "x"], "is not a whole number"),
    ],
)
def test_bad_arguments_get_a_clear_error_and_a_non_zero_exit(
    db_url: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = cli(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    ["failed-jobs", "replay", "dead-letters", "queues", "workers", "exporter", "backfill", "recover-orphans"],
)
def test_every_operator_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m workers {command}")
    assert "options:" in out


def test_the_checkpoint_is_per_kind_and_period(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    period = ["--from", "2020-01-01", "--to", "2020-02-01", "--no-progress"]
    assert cli(["backfill", "usage", *period]) == 0
    assert cli(["backfill", "churn", *period]) == 0
    with session_scope() as session:
        kinds = (
            session.execute(
                select(BackfillRun.kind).where(BackfillRun.period_start == date(2020, 1, 1)).order_by(BackfillRun.kind)
            )
            .scalars()
            .all()
        )
    assert kinds == ["churn", "usage"]
    assert "0 job(s) enqueued" in capsys.readouterr().out
