"""The offline engine and the jobs on it: dates, chunking, knowledge documents and voice actions without a model."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import insert, select

from models.ai import KnowledgeDocument, VoiceAction
from models.core import JobStatus, TeamMember
from tasks.ai import offline
from tasks.ai.dates import find_due_phrase, resolve_due, resolve_phrase
from tasks.ai.schemas import DocType
from tasks.ai.transcript import Turn, chunk_turns, estimate_tokens, normalise, render_turn, transcript_hash
from tests.ai.conftest import run_ai

WEDNESDAY = datetime(2026, 3, 11, 15, 0, tzinfo=timezone(timedelta(hours=-5)))

SALES_CALL = [
    {"speaker": "Priya", "text": "Thanks for joining, Mark. How do you run outbound today?"},
    {"speaker": "Mark", "text": "We use Outreach. The team likes the sequencing, but it is clunky and manual."},
    {"speaker": "Priya", "text": "Unlike Outreach, our platform writes and personalizes every step automatically."},
    {"speaker": "Mark", "text": "Honestly it sounds too expensive for us. How long does onboarding take?"},
    {"speaker": "Priya", "text": "Most teams are live in two weeks. Acme cut their ramp time by 40% last year."},
    {"speaker": "Mark", "text": "I need to run this by my CFO before we commit."},
    {"speaker": "Priya", "text": "Makes sense. I'll send you a one-page ROI summary by Friday."},
]


@pytest.mark.parametrize(
    ("sentence", "due"),
    [
        ("I'll send it by Friday.", "2026-03-13T17:00"),
        ("We'll have it to you tomorrow.", "2026-03-12T17:00"),
        ("Let's regroup next week.", "2026-03-20T17:00"),
        ("I'll get you numbers by EOD.", "2026-03-11T17:00"),
        ("The rollout lands end of month.", "2026-03-31T17:00"),
        ("We plan to expand in Q2.", "2026-06-30T17:00"),
        ("by end of day tomorrow", "2026-03-12T17:00"),
        ("Can we talk tomorrow at 3pm?", "2026-03-12T15:00"),
        ("I'll follow up in two days.", "2026-03-13T17:00"),
        ("see you on March 20th", "2026-03-20T17:00"),
    ],
)
def test_due_dates_resolve_relative_to_the_call_start(sentence: str, due: str) -> None:
    found = resolve_due(sentence, WEDNESDAY)
    assert found is not None
    assert found.due_at.isoformat().startswith(due)
    assert found.due_at.utcoffset() == timedelta(hours=-5)


@pytest.mark.parametrize("sentence", ["We will look at it.", "May I ask about your stack?", "We were busy."])
def test_no_date_is_read_into_ordinary_words(sentence: str) -> None:
    assert find_due_phrase(sentence) is None


def test_a_phrase_quoted_by_a_model_is_resolved_the_same_way() -> None:
    assert resolve_phrase("by Friday", WEDNESDAY) == datetime(2026, 3, 13, 17, 0, tzinfo=WEDNESDAY.tzinfo)
    assert resolve_phrase("whenever", WEDNESDAY) is None
    with pytest.raises(ValueError, match="timezone"):
        resolve_due("tomorrow", datetime(2026, 3, 11))


def test_both_transcript_shapes_mean_the_same() -> None:
    as_text = "\n".join(f"{t['speaker']}: {t['text']}" for t in SALES_CALL)
    assert transcript_hash(normalise(as_text)) == transcript_hash(normalise(SALES_CALL))
    with pytest.raises(ValueError):
        normalise("no speaker here")


def test_long_transcripts_are_chunked_to_the_budget_in_order() -> None:
    turns = normalise([{"speaker": "A" if i % 2 else "B", "text": f"Sentence number {i}. " * 30} for i in range(40)])
    turns.append(Turn(index=40, speaker="A", text="Very long. " * 400))
    chunks = chunk_turns(turns, token_budget=500)
    assert len(chunks) > 5
    assert all(sum(estimate_tokens(render_turn(t)) for t in chunk) <= 500 for chunk in chunks)
    flattened = [t.index for chunk in chunks for t in chunk]
    assert flattened == sorted(flattened) and set(flattened) == set(range(41))
    assert sum(1 for i in flattened if i == 40) > 1  # the long turn was split, keeping its index


def test_offline_documents_have_the_sections_of_their_type() -> None:
    turns = normalise(SALES_CALL)
    roles = offline.infer_roles(turns)
    card = offline.build_document(DocType.BATTLE_CARD, turns, roles)
    assert card.competitor == "Outreach"
    assert card.their_strengths and card.landmines and card.our_advantages
    assert all(p.turns for p in card.landmines)
    handler = offline.build_document(DocType.OBJECTION_HANDLER, turns, roles)
    categories = {o.category.value for o in handler.objections}
    assert {"price", "authority"} <= categories
    price = next(o for o in handler.objections if o.category.value == "price")
    assert price.response and any("40%" in p for p in price.proof_points) and price.turns == [3, 4]
    faq = offline.build_document(DocType.FAQ, turns, roles)
    assert [i.question for i in faq.items] == ["How long does onboarding take?"]
    assert faq.items[0].answer.startswith("Most teams are live in two weeks")
    playbook = offline.build_document(DocType.PLAYBOOK, turns, roles)
    assert "Next steps" in [s.name for s in playbook.stages]
    for document in (card, handler, faq, playbook):
        assert 0 <= document.confidence <= 1


def test_no_competitor_means_a_low_confidence_card() -> None:
    turns = normalise("Priya: Hello there.\nMark: Hi, all good.")
    card = offline.build_document(DocType.BATTLE_CARD, turns, offline.infer_roles(turns))
    assert card.competitor is None and card.confidence <= 0.2


@pytest.mark.usefixtures("celery_worker")
def test_knowledge_document_job_is_idempotent_per_transcript_and_type(make_workspace: Any, session: Any) -> None:
    workspace_id = make_workspace()
    # Team members mark who the reps are, whatever order people speak in.
    session.execute(insert(TeamMember).values(workspace_id=workspace_id, email="p@a.test", name="Priya Shah"))
    session.commit()
    transcript = [*SALES_CALL[1:], {"speaker": "Mark", "text": f"Thanks. Ref {uuid.uuid4().hex}"}]
    first = run_ai("ai.generate_knowledge_document", workspace_id=workspace_id, transcript=transcript,
                   doc_type="objection_handler", source="call")
    assert first.status == JobStatus.SUCCEEDED, first.error
    assert first.result["engine"] == "offline" and first.result["llm"]["engine"] == "offline"
    again = run_ai("ai.generate_knowledge_document", workspace_id=workspace_id, transcript=transcript,
                   doc_type="objection_handler", source="call")
    assert again.result["deduplicated"] is True
    assert again.result["knowledge_document_id"] == first.result["knowledge_document_id"]
    other_type = run_ai("ai.generate_knowledge_document", workspace_id=workspace_id, transcript=transcript,
                        doc_type="faq")
    assert other_type.result["knowledge_document_id"] != first.result["knowledge_document_id"]

    document = session.get(KnowledgeDocument, first.result["knowledge_document_id"])
    assert document.ai_generated is True and document.view_count == 0 and document.doc_type.value == "objection_handler"
    assert document.content["objections"] and 0 <= document.confidence <= 1
    cited = {i for o in document.content["objections"] for i in o["turns"]}
    assert {t["index"] for t in document.source_turns} == cited


@pytest.mark.usefixtures("celery_worker")
def test_voice_actions_offline_then_a_document_from_the_stored_transcript(make_workspace: Any, session: Any) -> None:
    workspace_id = make_workspace()
    job = run_ai("ai.extract_voice_actions", workspace_id=workspace_id,
                 transcript=[*SALES_CALL, {"speaker": "Mark", "text": f"Bye. {uuid.uuid4().hex}"}],
                 call_started_at=WEDNESDAY.isoformat(), participants=["Priya Shah", "Mark Davis"])
    assert job.status == JobStatus.SUCCEEDED, job.error
    row = session.get(VoiceAction, job.result["voice_action_id"])
    assert row.status.value == "pending_review" and row.reviewed_by is None and row.engine.value == "offline"
    [action] = [a for a in row.actions if a["turn_index"] == 6]
    assert action["type"] == "follow_up" and action["owner"] == "Priya Shah"
    assert action["due_at"].startswith("2026-03-13T17:00:00") and 0 < action["confidence"] <= 1
    assert action["evidence"] == "Priya: Makes sense. I'll send you a one-page ROI summary by Friday."

    document = run_ai("ai.generate_knowledge_document", workspace_id=workspace_id, transcript_id=row.id,
                      doc_type="battle_card")
    assert document.status == JobStatus.SUCCEEDED, document.error
    stored = session.get(KnowledgeDocument, document.result["knowledge_document_id"])
    assert stored.voice_action_id == row.id and stored.content["competitor"] == "Outreach"

    other_workspace = run_ai("ai.generate_knowledge_document", workspace_id=make_workspace(), transcript_id=row.id,
                             doc_type="faq")
    assert other_workspace.status == JobStatus.FAILED and "not found" in (other_workspace.error or "")


@pytest.mark.usefixtures("celery_worker")
def test_audio_offline_is_a_clear_error_not_a_guess(make_workspace: Any, session: Any) -> None:
    workspace_id = make_workspace()
    job = run_ai("ai.extract_voice_actions", workspace_id=workspace_id,
                 audio={"data_base64": base64.b64encode(b"fake-audio").decode()},
                 call_started_at=datetime.now(UTC).isoformat(), participants=[])
    assert job.status == JobStatus.FAILED and job.attempts == 1
    assert "transcription" in (job.error or "") and "offline" in (job.error or "")
    assert session.execute(select(VoiceAction).where(VoiceAction.workspace_id == workspace_id)).first() is None
