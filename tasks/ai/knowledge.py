"""Knowledge Fusion: battle cards, playbooks, objection handlers and FAQs generated from call transcripts."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.ai import KnowledgeDocType, KnowledgeDocument, KnowledgeSource, VoiceAction
from models.core import TeamMember
from tasks.ai import offline
from tasks.ai.engine import EngineReport, run_model, with_fallback
from tasks.ai.llm import LLMSettings
from tasks.ai.prompts import KNOWLEDGE_DOCUMENTS
from tasks.ai.schemas import (
    DOC_SCHEMAS,
    BattleCard,
    DocType,
    Faq,
    KnowledgeBody,
    ObjectionHandler,
    Playbook,
    PlaybookStage,
    SourcedPoint,
)
from tasks.ai.transcript import Turn, TurnIn, normalise, transcript_hash
from workers.errors import BadInput


def load_transcript(
    session: Session, workspace_id: int, transcript: Sequence[TurnIn] | str | None, transcript_id: int | None
) -> tuple[list[Turn], int | None]:
    """The turns to work on: given inline, or the transcript stored on a voice_actions row of the same workspace."""
    if (transcript is None) == (transcript_id is None):
        raise BadInput("give exactly one of transcript or transcript_id")
    if transcript_id is not None:
        stored = session.execute(
            select(VoiceAction.transcript).where(
                VoiceAction.id == transcript_id, VoiceAction.workspace_id == workspace_id
            )
        ).scalar_one_or_none()
        if stored is None:
            raise BadInput(f"transcript_id {transcript_id} not found in this workspace")
        return [Turn.model_validate(turn) for turn in stored], transcript_id
    try:
        return normalise(transcript), None  # type: ignore[arg-type]
    except ValueError as exc:
        raise BadInput(f"transcript: {exc}") from exc


def _key(value: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", value.lower()).strip()


def _points(points: Sequence[SourcedPoint]) -> list[SourcedPoint]:
    seen: dict[str, SourcedPoint] = {}
    for point in points:
        seen.setdefault(_key(point.text), point)
    return list(seen.values())


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 2) if values else 0.0


def merge_documents(doc_type: DocType, parts: Sequence[KnowledgeBody]) -> KnowledgeBody:
    """One document from the answers for each part of a long transcript (items keep their global turn numbers)."""
    if len(parts) == 1:
        return parts[0]
    confidence = _mean([p.confidence for p in parts])
    if doc_type == DocType.BATTLE_CARD:
        cards = [p for p in parts if isinstance(p, BattleCard)]
        named = Counter(c.competitor for c in cards if c.competitor)
        competitor = named.most_common(1)[0][0] if named else None
        same = [c for c in cards if c.competitor in (competitor, None)]
        return BattleCard(
            title=next((c.title for c in same if c.competitor), cards[0].title),
            competitor=competitor,
            their_strengths=_points([x for c in same for x in c.their_strengths]),
            our_advantages=_points([x for c in same for x in c.our_advantages]),
            landmines=_points([x for c in same for x in c.landmines]),
            talk_track=_points([x for c in same for x in c.talk_track]),
            confidence=confidence,
        )
    if doc_type == DocType.OBJECTION_HANDLER:
        handlers = [p for p in parts if isinstance(p, ObjectionHandler)]
        objections = {_key(o.objection): o for h in handlers for o in h.objections}
        return ObjectionHandler(title=handlers[0].title, objections=list(objections.values()), confidence=confidence)
    if doc_type == DocType.FAQ:
        faqs = [p for p in parts if isinstance(p, Faq)]
        items = {_key(i.question): i for f in faqs for i in f.items}
        return Faq(title=faqs[0].title, items=list(items.values()), confidence=confidence)
    playbooks = [p for p in parts if isinstance(p, Playbook)]
    stages: dict[str, list[SourcedPoint]] = {}
    for playbook in playbooks:
        for stage in playbook.stages:
            stages.setdefault(stage.name, []).extend(stage.steps)
    return Playbook(
        title=playbooks[0].title,
        stages=[PlaybookStage(name=name, steps=_points(steps)) for name, steps in stages.items()],
        confidence=confidence,
    )


def cited_turns(body: KnowledgeBody) -> set[int]:
    cited: set[int] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "turns" and isinstance(item, list):
                    cited.update(i for i in item if isinstance(i, int))
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(body.model_dump())
    return cited


def drop_unknown_turns(body: KnowledgeBody, known: set[int]) -> tuple[KnowledgeBody, int]:
    """Remove turn numbers a model cited that the transcript does not have; count them."""
    data = body.model_dump()
    removed = 0

    def walk(value: Any) -> None:
        nonlocal removed
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "turns" and isinstance(item, list):
                    kept = [i for i in item if i in known]
                    removed += len(item) - len(kept)
                    value[key] = kept
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    return type(body).model_validate(data), removed


def _item_citations(body: KnowledgeBody) -> list[list[int]]:
    """The turns each item of a document cites (battle card points, objections, FAQ items, playbook steps)."""
    if isinstance(body, BattleCard):
        points = body.their_strengths + body.our_advantages + body.landmines + body.talk_track
        return [p.turns for p in points]
    if isinstance(body, ObjectionHandler):
        return [o.turns for o in body.objections]
    if isinstance(body, Faq):
        return [i.turns for i in body.items]
    return [step.turns for stage in body.stages for step in stage.steps]


def ground_document(body: KnowledgeBody, turns: Sequence[Turn]) -> tuple[KnowledgeBody, list[str]]:
    """Confidence that reflects what the transcript backs up (run after unknown turns were dropped).

    A battle card's competitor must be named on the call, else the card is about someone the call never mentioned
    and its confidence is capped at 0.2; items left citing no turn are unsupported and scale the confidence down
    by their share. The rules always cite and quote, so this only ever lowers a model's self-assessment."""
    warnings: list[str] = []
    confidence = body.confidence
    if isinstance(body, BattleCard) and body.competitor:
        spoken = " ".join(turn.text for turn in turns).casefold()
        if body.competitor.casefold() not in spoken:
            warnings.append("competitor_not_in_transcript")
            confidence = min(confidence, 0.2)
    citations = _item_citations(body)
    uncited = sum(1 for turns_cited in citations if not turns_cited)
    if uncited:
        warnings.append(f"uncited_items:{uncited}")
        confidence *= (len(citations) - uncited) / len(citations)
    return body.model_copy(update={"confidence": round(confidence, 2)}), warnings


def team_member_names(session: Session, workspace_id: int) -> list[str]:
    return list(session.execute(select(TeamMember.name).where(TeamMember.workspace_id == workspace_id)).scalars())


def generate_knowledge_document(
    session: Session,
    *,
    workspace_id: int,
    doc_type: DocType,
    source: KnowledgeSource,
    transcript: Sequence[TurnIn] | str | None = None,
    transcript_id: int | None = None,
) -> dict[str, Any]:
    turns, voice_action_id = load_transcript(session, workspace_id, transcript, transcript_id)
    digest = transcript_hash(turns)
    existing = _existing(session, workspace_id, digest, doc_type)
    if existing is not None:
        return _result(existing, deduplicated=True, report=None)

    report = EngineReport(engine="offline")
    prompt = KNOWLEDGE_DOCUMENTS[doc_type.value]
    schema = DOC_SCHEMAS[doc_type]

    def by_model(settings: LLMSettings) -> KnowledgeBody:
        parts = run_model(
            session,
            settings,
            report,
            workspace_id=workspace_id,
            prompt=prompt,
            schema=schema,
            turns=turns,
            values=lambda text: {"source": source.value, "transcript": text},
        )
        return merge_documents(doc_type, parts)

    def by_rules() -> KnowledgeBody:
        roles = offline.infer_roles(turns, team_member_names(session, workspace_id))
        return offline.build_document(doc_type, turns, roles)

    body = with_fallback(report, by_model, by_rules)
    body, report.dropped_items = drop_unknown_turns(body, {t.index for t in turns})
    body, report.warnings = ground_document(body, turns)
    cited = cited_turns(body)
    source_turns = [{"index": t.index, "speaker": t.speaker, "text": t.text} for t in turns if t.index in cited]
    content = body.model_dump(mode="json", exclude={"title", "confidence"})
    inserted = session.execute(
        insert(KnowledgeDocument)
        .values(
            workspace_id=workspace_id,
            doc_type=KnowledgeDocType(doc_type.value),
            title=body.title,
            content=content,
            source=source,
            source_turns=source_turns,
            voice_action_id=voice_action_id,
            transcript_hash=digest,
            confidence=body.confidence,
            ai_generated=True,
            view_count=0,
            engine=report.engine,
            model=report.model if report.engine == "openai" else None,
            prompt_version=report.prompt_version if report.engine == "openai" else None,
        )
        .on_conflict_do_nothing(
            index_elements=["workspace_id", "transcript_hash", "doc_type"],
            index_where=text("transcript_hash IS NOT NULL"),
        )
        .returning(KnowledgeDocument.id)
    ).scalar_one_or_none()
    document = _existing(session, workspace_id, digest, doc_type)
    assert document is not None
    return _result(document, deduplicated=inserted is None, report=report)


def _existing(session: Session, workspace_id: int, digest: str, doc_type: DocType) -> KnowledgeDocument | None:
    return session.execute(
        select(KnowledgeDocument).where(
            KnowledgeDocument.workspace_id == workspace_id,
            KnowledgeDocument.transcript_hash == digest,
            KnowledgeDocument.doc_type == KnowledgeDocType(doc_type.value),
        )
    ).scalar_one_or_none()


def _result(document: KnowledgeDocument, *, deduplicated: bool, report: EngineReport | None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "knowledge_document_id": document.id,
        "doc_type": document.doc_type.value,
        "title": document.title,
        "confidence": document.confidence,
        "deduplicated": deduplicated,
        "engine": document.engine.value if document.engine else None,
    }
    if report is not None:
        result["llm"] = report.as_json()
    return result
