"""The OpenAI path end to end: a real worker, the official SDK, and a scripted OpenAI-compatible server.

Each test scripts the server's answers, runs the job through the ledger, then checks what we sent (model, schema,
no SDK retries) and what the ledger recorded (status, engine, attempts, tokens, fallback reason).
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from typing import Any

import pytest
from sqlalchemy import delete, select

from models.ai import KnowledgeDocument, LLMCacheEntry, VoiceAction
from models.core import JobStatus
from tests.ai.conftest import MODEL, run_ai
from tests.support.jobs import enqueue, wait_for_job
from tests.support.openai_server import CHAT_PATH, TRANSCRIPTION_PATH, OpenAIServer, Reply

pytestmark = pytest.mark.usefixtures("celery_worker")

CALL_START = "2026-03-11T15:00:00-05:00"
PARTICIPANTS = [{"name": "Priya Shah", "email": "priya@artisan.test"}, {"name": "Mark Davis"}]


def _transcript(tag: str) -> str:
    # A unique sentence per test: separate cache keys and voice_actions rows, and a marker to look for in logs.
    return (
        f"Priya: Thanks for the time today, Mark. Reference {tag}.\n"
        "Mark: The open question is pricing for forty seats.\n"
        "Priya: I'll send over a pricing proposal for forty seats by Friday.\n"
        "Mark: Great, and can you loop in your security lead?"
    )


def _answer(**overrides: Any) -> str:
    action = {
        "type": "follow_up",
        "title": "Send pricing proposal for forty seats",
        "description": "Priya sends the pricing proposal",
        "owner_speaker": "Priya",
        "due_phrase": "by Friday",
        "turn_index": 2,
        "confidence": 0.92,
    }
    action.update(overrides)
    return json.dumps({"actions": [action]})


def _voice_job(workspace_id: int, tag: str) -> Any:
    return run_ai(
        "ai.extract_voice_actions",
        workspace_id=workspace_id,
        transcript=_transcript(tag),
        call_started_at=CALL_START,
        participants=PARTICIPANTS,
    )


def _row(session: Any, voice_action_id: int) -> VoiceAction:
    return session.execute(select(VoiceAction).where(VoiceAction.id == voice_action_id)).scalar_one()


def test_valid_answer_is_validated_mapped_and_recorded(
    use_openai: OpenAIServer, make_workspace: Any, session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tag = uuid.uuid4().hex
    use_openai.script(CHAT_PATH, Reply.chat(_answer(), prompt_tokens=321, completion_tokens=54))
    caplog.set_level(logging.DEBUG)
    job = _voice_job(make_workspace(), tag)

    assert job.status == JobStatus.SUCCEEDED, job.error
    llm = job.result["llm"]
    assert job.result["engine"] == "openai"
    assert llm["model"] == "gpt-test-2026-01-01"  # the model the server says answered
    assert llm["prompt_version"] == "voice_actions@v1"
    assert (llm["calls"], llm["attempts"], llm["prompt_tokens"], llm["completion_tokens"]) == (1, 1, 321, 54)
    assert llm["latency_ms"] > 0 and llm["fallback_reason"] is None and llm["mode"] == "json_schema"

    [request] = use_openai.requests(CHAT_PATH)
    body = request.json
    assert body["model"] == MODEL
    assert body["response_format"]["type"] == "json_schema"
    schema = body["response_format"]["json_schema"]
    assert schema["name"] == "ActionDrafts" and schema["strict"] is True
    assert "turn_index" in json.dumps(schema["schema"])
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.headers["x-stainless-retry-count"] == "0"  # the SDK did not retry on its own
    assert "[2] Priya: I'll send over a pricing proposal" in body["messages"][1]["content"]

    row = _row(session, job.result["voice_action_id"])
    assert row.status.value == "pending_review" and row.engine.value == "openai" and row.model == "gpt-test-2026-01-01"
    [action] = row.actions
    assert action["owner"] == "Priya Shah" and action["owner_email"] == "priya@artisan.test"
    assert action["due_at"].startswith("2026-03-13T17:00:00")
    assert action["evidence"].startswith("Priya: I'll send over a pricing proposal")
    assert tag not in caplog.text  # transcript text never reaches the logs


def test_a_duplicate_job_and_a_retried_call_do_not_pay_twice(
    use_openai: OpenAIServer, make_workspace: Any, session: Any
) -> None:
    workspace_id = make_workspace()
    tag = uuid.uuid4().hex
    use_openai.script(CHAT_PATH, Reply.chat(_answer()))
    first = _voice_job(workspace_id, tag)
    second = _voice_job(workspace_id, tag)
    assert second.status == JobStatus.SUCCEEDED
    assert second.result["deduplicated"] is True
    assert second.result["voice_action_id"] == first.result["voice_action_id"]
    assert len(use_openai.requests(CHAT_PATH)) == 1

    # The row is gone (say the job's transaction rolled back after the call): the cached answer is used.
    session.execute(delete(VoiceAction).where(VoiceAction.id == first.result["voice_action_id"]))
    session.commit()
    third = _voice_job(workspace_id, tag)
    assert third.status == JobStatus.SUCCEEDED
    assert third.result["llm"]["cached_calls"] == 1 and third.result["llm"]["calls"] == 0
    assert len(use_openai.requests(CHAT_PATH)) == 1
    cached = session.execute(select(LLMCacheEntry).where(LLMCacheEntry.workspace_id == workspace_id)).scalar_one()
    assert (cached.task, cached.model, cached.prompt_version) == ("voice_actions", MODEL, "v1")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply.chat('{"actions": [{"type": "follow_up", "title": "Send'), "invalid_json"),
        (Reply.chat(json.dumps({"actions": [{"type": "meeting", "who": "Priya"}]})), "schema_mismatch"),
        (Reply.chat(_answer(), finish_reason="length", completion_tokens=4096), "truncated"),
    ],
    ids=["malformed-json", "schema-breaking", "finish-reason-length"],
)
def test_unusable_answers_are_not_retried_and_fall_back_to_the_rules(
    use_openai: OpenAIServer, make_workspace: Any, session: Any, reply: Reply, reason: str
) -> None:
    use_openai.script(CHAT_PATH, reply)
    job = _voice_job(make_workspace(), uuid.uuid4().hex)

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert len(use_openai.requests(CHAT_PATH)) == 1  # not retried blindly
    llm = job.result["llm"]
    assert job.result["engine"] == "offline"
    assert llm["fallback_reason"] == reason
    assert llm["prompt_tokens"] == 120  # the unusable answer was still paid for, and is on the record
    row = _row(session, job.result["voice_action_id"])
    assert row.engine.value == "offline"
    assert any(a["owner"] == "Priya Shah" and a["due_at"].startswith("2026-03-13") for a in row.actions)


def test_concurrent_duplicate_jobs_pay_for_one_call(use_openai: OpenAIServer, make_workspace: Any) -> None:
    """Two jobs with the same input (a double enqueue: different job ids, so the job lock does not pair them) run
    on two worker threads at once; the second waits on the cache key's lock and reads the first's answer."""
    workspace_id = make_workspace()
    use_openai.script(CHAT_PATH, Reply.chat(_answer(), delay_seconds=1.0), Reply.chat(_answer(), delay_seconds=1.0))
    args = {
        "workspace_id": workspace_id,
        "transcript": _transcript(uuid.uuid4().hex),
        "call_started_at": CALL_START,
        "participants": PARTICIPANTS,
    }
    first, second = (enqueue("ai.extract_voice_actions", dict(args), workspace_id=workspace_id) for _ in range(2))
    jobs = [wait_for_job(first, 60), wait_for_job(second, 60)]

    assert [job.status for job in jobs] == [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED], [job.error for job in jobs]
    assert len(use_openai.requests(CHAT_PATH)) == 1
    assert jobs[0].result["voice_action_id"] == jobs[1].result["voice_action_id"]
    assert sorted(job.result["deduplicated"] for job in jobs) == [False, True]


def test_what_the_transcript_does_not_back_up_is_not_stored_as_fact(
    use_openai: OpenAIServer, make_workspace: Any, session: Any
) -> None:
    # A deadline nobody said and an owner who was not on the call: the model's 0.92 is not taken at its word.
    use_openai.script(CHAT_PATH, Reply.chat(_answer(due_phrase="by March 30", owner_speaker="Zed")))
    job = _voice_job(make_workspace(), uuid.uuid4().hex)
    assert job.status == JobStatus.SUCCEEDED, job.error
    [action] = _row(session, job.result["voice_action_id"]).actions
    assert (action["owner"], action["due_at"], action["due_phrase"]) == (None, None, None)
    assert action["warnings"] == ["owner_not_in_call", "due_phrase_not_in_transcript"]
    assert action["confidence"] == 0.23  # 0.92 halved twice


def test_429_is_retried_after_the_servers_retry_after(use_openai: OpenAIServer, make_workspace: Any) -> None:
    use_openai.script(CHAT_PATH, Reply.rate_limited(retry_after=1), Reply.chat(_answer()))
    job = _voice_job(make_workspace(), uuid.uuid4().hex)

    assert job.status == JobStatus.SUCCEEDED, job.error
    first, second = use_openai.requests(CHAT_PATH)
    assert second.received_at - first.received_at >= 0.95
    assert second.headers["x-stainless-retry-count"] == "0"  # our retry, not the SDK's
    assert job.result["llm"]["attempts"] == 2 and job.result["engine"] == "openai"
    assert job.attempts == 1  # handled inside the run, no ledger retry needed


def test_a_500_is_retried_then_succeeds(use_openai: OpenAIServer, make_workspace: Any) -> None:
    use_openai.script(CHAT_PATH, Reply.error(500, "upstream exploded"), Reply.chat(_answer()))
    job = _voice_job(make_workspace(), uuid.uuid4().hex)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert len(use_openai.requests(CHAT_PATH)) == 2
    assert job.result["llm"]["attempts"] == 2


def test_a_persistent_500_exhausts_bounded_retries_and_fails_in_the_ledger(
    use_openai: OpenAIServer, make_workspace: Any, session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    workspace_id = make_workspace()
    tag = uuid.uuid4().hex
    caplog.set_level(logging.DEBUG)
    # No script: the server answers 500 to everything.
    job = _voice_job(workspace_id, tag)
    assert tag not in caplog.text and tag not in (job.error or "")  # the failure path logs no transcript either

    assert job.status == JobStatus.FAILED
    assert "llm unavailable" in (job.error or "") and "HTTP 500" in (job.error or "")
    # LLM_MAX_ATTEMPTS=2 calls per run, 1 run + 3 ledger retries (AI_MAX_RETRIES): bounded at 8 requests.
    assert job.attempts == 4
    assert len(use_openai.requests(CHAT_PATH)) == 8
    assert session.execute(select(VoiceAction).where(VoiceAction.workspace_id == workspace_id)).first() is None


def test_an_answer_slower_than_the_timeout_is_abandoned_and_retried(
    use_openai: OpenAIServer, make_workspace: Any
) -> None:
    use_openai.script(CHAT_PATH, Reply.chat(_answer(), delay_seconds=10), Reply.chat(_answer()))
    job = _voice_job(make_workspace(), uuid.uuid4().hex)

    assert job.status == JobStatus.SUCCEEDED, job.error
    first, second = use_openai.requests(CHAT_PATH)
    # The client gave up at its 3 s timeout, well before the 10 s answer.
    assert 2.5 <= second.received_at - first.received_at < 9
    assert job.result["llm"]["attempts"] == 2


def test_a_server_that_rejects_schemas_is_asked_in_json_mode(use_openai: OpenAIServer, make_workspace: Any) -> None:
    use_openai.script(
        CHAT_PATH,
        Reply.error(400, "response_format of type json_schema is not supported by this server"),
        Reply.chat(_answer()),
        Reply.chat(_answer(turn_index=0, title="Say thanks", due_phrase=None)),
    )
    workspace_id = make_workspace()
    job = _voice_job(workspace_id, uuid.uuid4().hex)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["llm"]["mode"] == "json_object"
    rejected, retried = use_openai.requests(CHAT_PATH)
    assert rejected.json["response_format"]["type"] == "json_schema"
    assert retried.json["response_format"] == {"type": "json_object"}
    assert '"turn_index"' in retried.json["messages"][0]["content"]  # the schema is spelled out in the prompt

    # Remembered: the next job goes straight to JSON mode.
    _voice_job(workspace_id, uuid.uuid4().hex)
    assert use_openai.requests(CHAT_PATH)[-1].json["response_format"] == {"type": "json_object"}


def test_an_authentication_error_fails_the_job_without_retries(use_openai: OpenAIServer, make_workspace: Any) -> None:
    use_openai.script(CHAT_PATH, Reply.error(401, "invalid api key"))
    job = _voice_job(make_workspace(), uuid.uuid4().hex)
    assert job.status == JobStatus.FAILED
    assert "HTTP 401" in (job.error or "") and "test-key" not in (job.error or "")
    assert len(use_openai.requests(CHAT_PATH)) == 1 and job.attempts == 1


def test_knowledge_document_from_the_model_keeps_only_real_turns(
    use_openai: OpenAIServer, make_workspace: Any, session: Any
) -> None:
    card = {
        "title": "Battle card: Outreach",
        "competitor": "Outreach",
        "their_strengths": [{"text": "Team likes the sequencing UI", "turns": [1]}],
        "our_advantages": [{"text": "Sequences write themselves", "turns": [2, 99]}],
        "landmines": [],
        "talk_track": [{"text": "Ask how much time reps spend writing", "turns": [2]}],
        "confidence": 0.8,
    }
    use_openai.script(CHAT_PATH, Reply.chat(json.dumps(card)))
    job = run_ai(
        "ai.generate_knowledge_document",
        workspace_id=make_workspace(),
        doc_type="battle_card",
        transcript=[
            {"speaker": "Ella", "text": f"Thanks for joining. {uuid.uuid4().hex}"},
            {"speaker": "Ravi", "text": "We use Outreach and the team likes the sequencing UI."},
            {"speaker": "Ella", "text": "Unlike Outreach, our sequences write and personalize themselves."},
        ],
    )
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["llm"]["dropped_items"] == 1  # turn 99 does not exist
    document = session.get(KnowledgeDocument, job.result["knowledge_document_id"])
    assert document.engine.value == "openai" and document.ai_generated and document.view_count == 0
    assert document.content["competitor"] == "Outreach"
    assert document.content["our_advantages"][0]["turns"] == [2]
    assert [t["index"] for t in document.source_turns] == [1, 2]
    request = use_openai.requests(CHAT_PATH)[0].json
    assert request["response_format"]["json_schema"]["name"] == "BattleCard"


def test_a_battle_card_about_a_competitor_the_call_never_named_is_not_trusted(
    use_openai: OpenAIServer, make_workspace: Any
) -> None:
    card = {
        "title": "Battle card: Salesloft",
        "competitor": "Salesloft",
        "their_strengths": [{"text": "Cadence builder", "turns": []}],
        "our_advantages": [{"text": "Sequences write themselves", "turns": [2]}],
        "landmines": [],
        "talk_track": [],
        "confidence": 0.9,
    }
    use_openai.script(CHAT_PATH, Reply.chat(json.dumps(card)))
    job = run_ai(
        "ai.generate_knowledge_document",
        workspace_id=make_workspace(),
        doc_type="battle_card",
        transcript=[
            {"speaker": "Ella", "text": f"Thanks for joining. {uuid.uuid4().hex}"},
            {"speaker": "Ravi", "text": "We use Outreach and the team likes the sequencing UI."},
            {"speaker": "Ella", "text": "Unlike Outreach, our sequences write and personalize themselves."},
        ],
    )
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["llm"]["warnings"] == ["competitor_not_in_transcript", "uncited_items:1"]
    assert job.result["confidence"] == 0.1  # capped at 0.2, then halved: one of two items cites nothing


def test_audio_is_transcribed_first_then_extracted(use_openai: OpenAIServer, make_workspace: Any, session: Any) -> None:
    use_openai.script(
        TRANSCRIPTION_PATH,
        Reply.transcription(f"Priya: Ref {uuid.uuid4().hex}.\nMark: Pricing please.\nPriya: I'll send it by Friday."),
    )
    use_openai.script(CHAT_PATH, Reply.chat(_answer()))
    job = run_ai(
        "ai.extract_voice_actions",
        workspace_id=make_workspace(),
        audio={"data_base64": base64.b64encode(b"ID3fake-mp3-bytes").decode(), "filename": "call.mp3"},
        call_started_at=CALL_START,
        participants=PARTICIPANTS,
    )
    assert job.status == JobStatus.SUCCEEDED, job.error
    [upload] = use_openai.requests(TRANSCRIPTION_PATH)
    assert b"ID3fake-mp3-bytes" in upload.raw and b"whisper-1" in upload.raw
    row = _row(session, job.result["voice_action_id"])
    assert row.input_kind.value == "audio"
    assert [t["speaker"] for t in row.transcript] == ["Priya", "Mark", "Priya"]
    assert job.result["llm"]["transcription"] == "called"


def test_a_retry_after_transcribing_does_not_pay_for_the_transcription_again(
    use_openai: OpenAIServer, make_workspace: Any
) -> None:
    use_openai.script(
        TRANSCRIPTION_PATH,
        Reply.transcription(f"Priya: Ref {uuid.uuid4().hex}.\nMark: Pricing please.\nPriya: I'll send it by Friday."),
    )
    # LLM_MAX_ATTEMPTS=2: two 500s end the first run (a ledger retry), the second run gets an answer.
    use_openai.script(CHAT_PATH, Reply.error(500, "busy"), Reply.error(500, "busy"), Reply.chat(_answer()))
    job = run_ai(
        "ai.extract_voice_actions",
        workspace_id=make_workspace(),
        audio={"data_base64": base64.b64encode(uuid.uuid4().bytes).decode()},
        call_started_at=CALL_START,
        participants=PARTICIPANTS,
    )
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempts == 2 and len(use_openai.requests(CHAT_PATH)) == 3
    assert len(use_openai.requests(TRANSCRIPTION_PATH)) == 1
    assert job.result["llm"]["transcription"] == "cached"


def test_a_long_transcript_is_split_to_the_budget_and_the_parts_merged(
    use_openai: OpenAIServer, make_workspace: Any, session: Any
) -> None:
    from tasks.ai.engine import EngineReport, llm_settings, run_model
    from tasks.ai.prompts import VOICE_ACTIONS
    from tasks.ai.schemas import ActionDrafts
    from tasks.ai.transcript import normalise
    from tasks.ai.voice import merge_drafts

    turns = normalise([{"speaker": "Priya" if i % 2 else "Mark", "text": f"Point {i}. " * 40} for i in range(12)])
    use_openai.script(CHAT_PATH, *[Reply.chat(_answer(turn_index=2 * n + 1, title=f"Part {n}")) for n in range(12)])
    settings = llm_settings()
    assert settings is not None
    report = EngineReport(engine="openai")
    parts = run_model(
        session,
        settings,
        report,
        workspace_id=make_workspace(),
        prompt=VOICE_ACTIONS,
        schema=ActionDrafts,
        turns=turns,
        values=lambda text: {"participants": "Priya", "call_started_at": CALL_START, "transcript": text},
        chunk_tokens=400,
    )
    requests = use_openai.requests(CHAT_PATH)
    assert report.chunks == len(requests) == len(parts) > 2
    # Each request carried only its own part, numbered with the global turn indexes.
    assert "[0] Mark" in requests[0].json["messages"][1]["content"]
    assert "[0] Mark" not in requests[-1].json["messages"][1]["content"]
    assert f"[{turns[-1].index}] " in requests[-1].json["messages"][1]["content"]
    merged = merge_drafts(parts)
    assert [a.title for a in merged.actions] == [f"Part {n}" for n in range(len(parts))]
    assert report.prompt_tokens == 120 * len(parts)
