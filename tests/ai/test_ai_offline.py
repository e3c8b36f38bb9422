"""The offline engine and the jobs on it: dates, chunking, knowledge documents and voice actions without a model."""

from __future__ import annotations

import base64
import logging
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


# Written for the content tests below, not taken from the gold set: a competitor that is not first in the list of
# known names, a CRM mentioned only as an integration, and objections of three other categories.
GONG_CALL = """Rita: Thanks for hopping on, Paul. What are you using for call recording today?
Paul: We're on Gong right now. The transcripts are accurate and the reps like the search, but it's pricey and the \
coaching workflow is clunky.
Rita: That's a common story. Our coaching is built in and we include recording at no extra cost.
Paul: Does it integrate with Salesforce?
Rita: Yes, natively, and it syncs activities every five minutes."""
OBJECTIONS_CALL = """Rita: So that's the overview. What do you think?
Paul: Honestly I'm worried about data security with an AI tool touching our customer emails.
Rita: Fair concern. We're SOC 2 Type II certified and data never leaves the EU region; Siemens ran a full \
security review last year.
Paul: Good to know. The other thing is we just don't have the bandwidth to roll out anything new until after our re-org.
Rita: Understood. Most teams start with five reps, which takes about two hours of setup.
Paul: And I'd have to get approval from our CFO for anything over ten thousand.
Rita: I can put together a one-page business case for her."""
FAQ_CALL = """Rita: Happy to answer anything.
Paul: How long does it take to warm up a new sending domain?
Rita: Usually about two weeks. We ramp volume automatically.
Paul: Can we bring our own email templates?
Rita: Yes, you can import them from a CSV or paste them in.
Paul: Great, thanks."""


def _document(doc_type: DocType, transcript: str) -> Any:
    turns = normalise(transcript)
    return offline.build_document(doc_type, turns, offline.infer_roles(turns))


def test_a_battle_card_is_about_the_competitor_the_prospect_named() -> None:
    card = _document(DocType.BATTLE_CARD, GONG_CALL)
    assert card.competitor == "Gong" and card.title == "Battle card: Gong"
    # The prospect's praise of Gong is its strength, the complaint a landmine; both cite the prospect's turn.
    assert [(p.text, p.turns) for p in card.their_strengths] == [
        ("The transcripts are accurate and the reps like the search", [1])
    ]
    assert [(p.text, p.turns) for p in card.landmines] == [("it's pricey and the coaching workflow is clunky.", [1])]
    assert any("no extra cost" in p.text and p.turns == [1, 2] for p in card.our_advantages)
    assert all("Salesforce" not in p.text for p in card.their_strengths + card.landmines)


def test_objection_categories_match_what_the_prospect_said() -> None:
    handler = _document(DocType.OBJECTION_HANDLER, OBJECTIONS_CALL)
    by_turn = {o.turns[0]: o for o in handler.objections}
    trust = by_turn[1]
    assert trust.category.value == "trust" and trust.turns == [1, 2]
    assert trust.response is not None and trust.response.startswith("Fair concern.")
    assert trust.proof_points == [
        "We're SOC 2 Type II certified and data never leaves the EU region; Siemens ran a full security review last "
        "year."
    ]
    authority = by_turn[5]
    assert authority.category.value == "authority" and authority.turns == [5, 6]
    # Every objection is a prospect's sentence, never the rep's.
    assert all(o.turns[0] % 2 == 1 for o in handler.objections)


def test_an_integration_question_is_not_a_competitor_objection() -> None:
    handler = _document(DocType.OBJECTION_HANDLER, GONG_CALL)
    assert [(o.turns, o.category.value) for o in handler.objections] == [([1, 2], "price")]


def test_faq_pairs_each_question_with_the_reps_answer() -> None:
    faq = _document(DocType.FAQ, FAQ_CALL)
    assert [(i.question, i.answer, i.turns) for i in faq.items] == [
        (
            "How long does it take to warm up a new sending domain?",
            "Usually about two weeks. We ramp volume automatically.",
            [1, 2],
        ),
        ("Can we bring our own email templates?", "Yes, you can import them from a CSV or paste them in.", [3, 4]),
    ]


def test_playbook_steps_land_in_the_stage_they_belong_to() -> None:
    playbook = _document(DocType.PLAYBOOK, OBJECTIONS_CALL)
    stages = {stage.name: stage.steps for stage in playbook.stages}
    assert [s.turns for s in stages["Objection handling"]] == [[2], [2]]  # the reply to the security concern
    assert [(s.text, s.turns) for s in stages["Next steps"]] == [
        ("I can put together a one-page business case for her.", [6])
    ]
    assert stages["Discovery"][0].text == "What do you think?"


def test_an_unpunctuated_monologue_is_clipped_not_a_failure() -> None:
    """Speech-to-text often has no full stops: one "sentence" of thousands of characters must still make items."""
    ramble = "we already use Outreach and honestly it is too expensive " * 60
    turns = normalise(
        [
            {"speaker": "Rep", "text": "Can you tell me about your stack?"},
            {"speaker": "Buyer", "text": ramble + "so can you send me your pricing by Friday"},
            {"speaker": "Rep", "text": "I'll send the pricing by Friday " + "and our case studies " * 120},
        ]
    )
    roles = offline.infer_roles(turns)
    for doc_type in DocType:
        assert offline.build_document(doc_type, turns, roles).confidence >= 0
    handler = offline.build_document(DocType.OBJECTION_HANDLER, turns, roles)
    objection = handler.objections[0].objection
    assert len(objection) <= offline.POINT_CHARS and objection.endswith("...") and objection.startswith("we already")
    assert handler.objections[0].response is not None and handler.objections[0].response.endswith("...")
    actions = offline.extract_actions(turns).actions
    assert actions and all(len(a.description) <= offline.DESCRIPTION_CHARS for a in actions)


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
    first = run_ai(
        "ai.generate_knowledge_document",
        workspace_id=workspace_id,
        transcript=transcript,
        doc_type="objection_handler",
        source="call",
    )
    assert first.status == JobStatus.SUCCEEDED, first.error
    assert first.result["engine"] == "offline" and first.result["llm"]["engine"] == "offline"
    again = run_ai(
        "ai.generate_knowledge_document",
        workspace_id=workspace_id,
        transcript=transcript,
        doc_type="objection_handler",
        source="call",
    )
    assert again.result["deduplicated"] is True
    assert again.result["knowledge_document_id"] == first.result["knowledge_document_id"]
    other_type = run_ai(
        "ai.generate_knowledge_document", workspace_id=workspace_id, transcript=transcript, doc_type="faq"
    )
    assert other_type.result["knowledge_document_id"] != first.result["knowledge_document_id"]

    document = session.get(KnowledgeDocument, first.result["knowledge_document_id"])
    assert document.ai_generated is True and document.view_count == 0 and document.doc_type.value == "objection_handler"
    assert document.content["objections"] and 0 <= document.confidence <= 1
    cited = {i for o in document.content["objections"] for i in o["turns"]}
    assert {t["index"] for t in document.source_turns} == cited


@pytest.mark.usefixtures("celery_worker")
def test_voice_actions_offline_then_a_document_from_the_stored_transcript(make_workspace: Any, session: Any) -> None:
    workspace_id = make_workspace()
    job = run_ai(
        "ai.extract_voice_actions",
        workspace_id=workspace_id,
        transcript=[*SALES_CALL, {"speaker": "Mark", "text": f"Bye. {uuid.uuid4().hex}"}],
        call_started_at=WEDNESDAY.isoformat(),
        participants=["Priya Shah", "Mark Davis"],
    )
    assert job.status == JobStatus.SUCCEEDED, job.error
    row = session.get(VoiceAction, job.result["voice_action_id"])
    assert row.status.value == "pending_review" and row.reviewed_by is None and row.engine.value == "offline"
    [action] = [a for a in row.actions if a["turn_index"] == 6]
    assert action["type"] == "follow_up" and action["owner"] == "Priya Shah"
    assert action["due_at"].startswith("2026-03-13T17:00:00") and 0 < action["confidence"] <= 1
    assert action["evidence"] == "Priya: Makes sense. I'll send you a one-page ROI summary by Friday."

    document = run_ai(
        "ai.generate_knowledge_document", workspace_id=workspace_id, transcript_id=row.id, doc_type="battle_card"
    )
    assert document.status == JobStatus.SUCCEEDED, document.error
    stored = session.get(KnowledgeDocument, document.result["knowledge_document_id"])
    assert stored.voice_action_id == row.id and stored.content["competitor"] == "Outreach"

    other_workspace = run_ai(
        "ai.generate_knowledge_document", workspace_id=make_workspace(), transcript_id=row.id, doc_type="faq"
    )
    assert other_workspace.status == JobStatus.FAILED and "not found" in (other_workspace.error or "")


@pytest.mark.usefixtures("celery_worker")
def test_audio_offline_is_a_clear_error_not_a_guess(make_workspace: Any, session: Any) -> None:
    workspace_id = make_workspace()
    job = run_ai(
        "ai.extract_voice_actions",
        workspace_id=workspace_id,
        audio={"data_base64": base64.b64encode(b"fake-audio").decode()},
        call_started_at=datetime.now(UTC).isoformat(),
        participants=[],
    )
    assert job.status == JobStatus.FAILED and job.attempts == 1
    assert "transcription" in (job.error or "") and "offline" in (job.error or "")
    assert session.execute(select(VoiceAction).where(VoiceAction.workspace_id == workspace_id)).first() is None


@pytest.mark.usefixtures("celery_worker")
def test_a_long_unpunctuated_turn_is_extracted_and_no_text_reaches_the_logs(
    make_workspace: Any, session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tag = uuid.uuid4().hex
    ramble = "I'll send you the notes " + f"and the figure {tag} " * 150 + "by Friday."
    job = run_ai(
        "ai.extract_voice_actions",
        workspace_id=make_workspace(),
        transcript=[{"speaker": "Ann", "text": "Can you recap?"}, {"speaker": "Bob", "text": ramble}],
        call_started_at=WEDNESDAY.isoformat(),
        participants=["Ann Lee", "Bob Stone"],
    )
    assert job.status == JobStatus.SUCCEEDED, job.error
    row = session.get(VoiceAction, job.result["voice_action_id"])
    [action] = row.actions
    assert action["turn_index"] == 1 and action["owner"] == "Bob Stone" and action["type"] == "follow_up"
    assert action["due_at"].startswith("2026-03-13T17:00:00")
    assert len(action["description"]) <= offline.DESCRIPTION_CHARS and action["evidence"].endswith("...")
    assert tag not in caplog.text


@pytest.mark.usefixtures("celery_worker")
def test_a_participant_from_another_workspace_is_refused(make_workspace: Any, session: Any) -> None:
    workspace_id, other = make_workspace(), make_workspace()
    outsider = session.execute(
        insert(TeamMember).values(workspace_id=other, email="o@b.test", name="Olga Other").returning(TeamMember.id)
    ).scalar_one()
    insider = session.execute(
        insert(TeamMember)
        .values(workspace_id=workspace_id, email="p@a.test", name="Priya Shah")
        .returning(TeamMember.id)
    ).scalar_one()
    session.commit()
    call = {"workspace_id": workspace_id, "transcript": SALES_CALL, "call_started_at": WEDNESDAY.isoformat()}
    refused = run_ai(
        "ai.extract_voice_actions",
        **call,
        participants=[
            {"name": "Priya Shah", "team_member_id": insider},
            {"name": "Olga Other", "team_member_id": outsider},
        ],
    )
    assert refused.status == JobStatus.FAILED and refused.attempts == 1
    assert f"team_member_id {outsider} is not a member of this workspace" in (refused.error or "")
    assert session.execute(select(VoiceAction).where(VoiceAction.workspace_id == workspace_id)).first() is None
    accepted = run_ai(
        "ai.extract_voice_actions", **call, participants=[{"name": "Priya Shah", "team_member_id": insider}]
    )
    assert accepted.status == JobStatus.SUCCEEDED, accepted.error


def test_nul_characters_are_refused_with_the_field_named() -> None:
    from pydantic import ValidationError

    from workers.ledger import describe_validation_error, validate_args

    with pytest.raises(ValidationError) as caught:
        validate_args(
            "ai.extract_voice_actions",
            {
                "workspace_id": 1,
                "call_started_at": WEDNESDAY.isoformat(),
                "transcript": [{"speaker": "Ann", "text": "fine"}, {"speaker": "Bob", "text": "bad\x00byte"}],
            },
        )
    message = describe_validation_error("ai.extract_voice_actions", caught.value)
    assert "transcript.1.text contains a NUL character" in message and "bad" not in message
    with pytest.raises(ValidationError, match=r"context\.subject contains a NUL"):
        validate_args("ai.scan_content", {"workspace_id": 1, "content": "hi", "context": {"subject": "a\x00"}})
