"""AI jobs: 200 transcripts through the OpenAI path against a local server that answers after 300 ms, on the
thread-pool `ai` worker (ours) against a prefork worker of 2 processes (bare baseline), in the same run; then the
offline engine's transcripts/s, scan_content's messages/s, and the offline engine's precision and recall on the gold
set (tuned with) and the held-out set (never tuned against), with precision per confidence band.

Knobs: BENCH_AI_JOBS (200), BENCH_AI_THREADS (16), BENCH_AI_LATENCY (0.3 s), BENCH_AI_OFFLINE (1000),
BENCH_AI_MESSAGES (2000).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, insert, select

from benchmarks.common import bench_environment, report
from models.core import Job, JobStatus, Workspace
from tests.support.openai_server import OpenAIServer, RecordedRequest, Reply
from tests.support.services import WorkerProcess, wait_until
from workers.db import session_scope
from workers.ledger import Publishable, publish, record_job

JOBS = int(os.environ.get("BENCH_AI_JOBS", "200"))
THREADS = int(os.environ.get("BENCH_AI_THREADS", "16"))
LATENCY = float(os.environ.get("BENCH_AI_LATENCY", "0.3"))
OFFLINE_TRANSCRIPTS = int(os.environ.get("BENCH_AI_OFFLINE", "1000"))
MESSAGES = int(os.environ.get("BENCH_AI_MESSAGES", "2000"))
CALL_START = "2026-03-11T15:00:00-05:00"

ANSWER = json.dumps(
    {
        "actions": [
            {
                "type": "follow_up",
                "title": "Send pricing proposal",
                "description": "Send the pricing proposal for forty seats",
                "owner_speaker": "Priya",
                "due_phrase": "by Friday",
                "turn_index": 2,
                "confidence": 0.9,
            }
        ]
    }
)


def _transcript(run: str, i: int) -> str:
    return (
        f"Priya: Thanks for the time today. This is call {run}-{i}.\n"
        "Mark: The open question is pricing for forty seats, and security review.\n"
        "Priya: I'll send over a pricing proposal by Friday, and our SOC 2 report.\n"
        "Mark: Great. Can you also loop in your solutions engineer next week?\n"
        "Priya: Sure, let's schedule a technical deep dive for Tuesday."
    )


def _answer_slowly(_: RecordedRequest) -> Reply:
    return Reply.chat(ANSWER, delay_seconds=LATENCY)


def _run_jobs(workspace_id: int, jobs: int, run: str) -> float:
    with session_scope() as session:
        items = []
        for i in range(jobs):
            args = {
                "workspace_id": workspace_id,
                "transcript": _transcript(run, i),
                "call_started_at": CALL_START,
                "participants": ["Priya Shah", "Mark Davis"],
            }
            job, _ = record_job(session, "ai.extract_voice_actions", args, workspace_id=workspace_id)
            items.append(Publishable(job.id, job.task, job.args))
    ids = [item.id for item in items]
    started = time.perf_counter()
    publish(items)

    def done() -> bool:
        with session_scope() as session:
            counts = dict(
                session.execute(select(Job.status, func.count()).where(Job.id.in_(ids)).group_by(Job.status)).all()
            )
        if counts.get(JobStatus.FAILED):
            raise RuntimeError(f"{counts[JobStatus.FAILED]} benchmark jobs failed")
        return counts.get(JobStatus.SUCCEEDED, 0) == jobs

    wait_until(done, 900, 0.05, "ai jobs")
    return time.perf_counter() - started


def _worker_throughput(pool: str, concurrency: int, env: dict[str, str], workspace_id: int) -> float:
    with WorkerProcess(queues=["ai"], pool=pool, concurrency=concurrency, name=f"bench-ai-{pool}", env=env):
        _run_jobs(workspace_id, 4, f"warm-{pool}-{uuid.uuid4().hex}")
        seconds = _run_jobs(workspace_id, JOBS, f"{pool}-{uuid.uuid4().hex}")
    return JOBS / seconds


def _offline_rate() -> float:
    from tasks.ai import offline
    from tasks.ai.transcript import normalise
    from tasks.ai.voice import Participant, finish_actions

    started_at = datetime.fromisoformat(CALL_START)
    participants = [Participant(name="Priya Shah"), Participant(name="Mark Davis")]
    transcripts = [_transcript("offline", i) for i in range(OFFLINE_TRANSCRIPTS)]
    finish_actions(
        offline.extract_actions(normalise(transcripts[0])), normalise(transcripts[0]), participants, started_at
    )  # warm dateparser's language data
    started = time.perf_counter()
    for text in transcripts:
        turns = normalise(text)
        finish_actions(offline.extract_actions(turns, ["Priya Shah", "Mark Davis"]), turns, participants, started_at)
    return OFFLINE_TRANSCRIPTS / (time.perf_counter() - started)


def _scan_rates() -> tuple[float, float]:
    """scan() with every rule, and presidio's analyzer alone (what the PII pass would cost without our rules)."""
    from models.ai import SafetyChannel
    from tasks.ai.safety import ScanContext, analyzer, scan

    messages = [
        f"Hi Dana, following up on pricing (quote {i}). Call me at (650) 253-0000 or reply to priya@artisan.test. "
        "Our customers cut ramp time by 40%. Artisan Inc., 548 Market Street, San Francisco. Unsubscribe anytime."
        for i in range(MESSAGES)
    ]
    context = ScanContext(subject="Pricing follow-up")
    scan(messages[0], SafetyChannel.EMAIL, context)  # build the analyzer once
    started = time.perf_counter()
    for message in messages:
        scan(message, SafetyChannel.EMAIL, context)
    ours = MESSAGES / (time.perf_counter() - started)
    engine = analyzer()
    started = time.perf_counter()
    for message in messages:
        engine.analyze(message, language="en")
    return ours, MESSAGES / (time.perf_counter() - started)


def main() -> None:
    with bench_environment("ai"), OpenAIServer(responder=_answer_slowly) as server:
        env = {
            "LLM_PROVIDER": "openai",
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": "bench-key",
            "OPENAI_MODEL": "gpt-bench",
        }
        with session_scope() as session:
            workspace_id = session.execute(
                insert(Workspace).values(name=f"bench-ai-{uuid.uuid4().hex[:8]}").returning(Workspace.id)
            ).scalar_one()
        threads_rate = _worker_throughput("threads", THREADS, env, workspace_id)
        prefork_rate = _worker_throughput("prefork", 2, env, workspace_id)
        requests = len(server.requests())
    report(
        "ai",
        f"{JOBS} ai.extract_voice_actions via the OpenAI SDK, local server answering after {LATENCY * 1000:.0f} ms "
        f"({requests} chat requests in total)",
        ours=(f"thread-pool ai worker (-P threads -c {THREADS})", threads_rate, "jobs/s"),
        bare=("prefork worker (-P prefork -c 2)", prefork_rate, "jobs/s"),
    )
    scan_rate, presidio_rate = _scan_rates()
    report(
        "ai",
        f"scan_content rules on {MESSAGES} sales emails, one thread, no database",
        ours=("scan(): PII + profanity + spam + CAN-SPAM + GDPR", scan_rate, "messages/s"),
        bare=("presidio AnalyzerEngine.analyze alone", presidio_rate, "messages/s"),
    )
    print(f"[ai] offline engine: {_offline_rate():,.0f} transcripts/s (5-turn calls, extract + finish, one thread)")
    from tests.ai.gold import calibration_line, load_gold, load_heldout, predict_offline, score

    today = f"{datetime.now(UTC):%Y-%m-%d}"
    for name, snippets in (("gold set (tuned with)", load_gold()), ("held-out set (never tuned)", load_heldout())):
        print(f"[ai] {name}, offline engine ({today}): {score(snippets, predict_offline).line()}")
        print(f"[ai]   {calibration_line(snippets, predict_offline)}")


if __name__ == "__main__":
    main()
    sys.exit(0)
