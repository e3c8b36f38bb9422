"""Voice-to-Action: actions from a call transcript (or its audio), stored on a voice_actions row for review."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.ai import VoiceAction, VoiceActionStatus, VoiceInputKind
from models.core import TeamMember
from tasks.ai import offline
from tasks.ai.dates import resolve_phrase
from tasks.ai.engine import (
    EngineReport,
    cached_json,
    input_hash,
    llm_settings,
    lock_cache_key,
    run_model,
    store_json,
    with_fallback,
)
from tasks.ai.llm import LLMError, LLMSettings, LLMUnavailable, transcribe
from tasks.ai.prompts import VOICE_ACTIONS
from tasks.ai.schemas import ActionDrafts, ExtractedAction
from tasks.ai.transcript import Turn, TurnIn, normalise, sentences, transcript_hash
from workers.errors import BadInput, Transient
from workers.settings import get_settings

# Deployment setting for the speech-to-text model of an OpenAI-compatible server.
# The transcription endpoint's own upload limit is 25 MB.
MAX_AUDIO_BYTES = 25 * 1024 * 1024
EVIDENCE_CHARS = 500
# Cache identity of a transcription (llm_cache_entries.task / prompt_version): bump the version when the request
# changes (response format, language hint), so old texts are not reused for a different question.
TRANSCRIPTION_TASK = "transcription"
TRANSCRIPTION_VERSION = "v1"
_LABELLED_LINE = re.compile(r"^\s*[^:\n]{1,80}:\s*\S")


class Participant(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    team_member_id: int | None = None


class AudioIn(BaseModel):
    data_base64: str = Field(min_length=4, max_length=(MAX_AUDIO_BYTES * 4) // 3 + 4)
    filename: str = Field(default="call.mp3", min_length=1, max_length=200)
    content_type: str = Field(default="audio/mpeg", max_length=100)

    def data(self) -> bytes:
        try:
            return base64.b64decode(self.data_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadInput("audio.data_base64 is not valid base64") from exc


def _matches(label: str, participant: Participant) -> bool:
    label, name = label.casefold().strip(), participant.name.casefold().strip()
    if label == name:
        return True
    parts = name.split()
    return bool(parts) and label in {parts[0], parts[-1]}


def map_owner(speaker: str | None, participants: Sequence[Participant], speakers: set[str]) -> Participant | None:
    """The participant a speaker label stands for; a label that is neither a participant nor a speaker is dropped
    (a model must not invent an owner)."""
    if not speaker:
        return None
    for participant in participants:
        if _matches(speaker, participant):
            return participant
    if speaker.casefold() in {s.casefold() for s in speakers}:
        return Participant(name=speaker)
    return None


def _spoken_near(phrase: str, turn_index: int, by_index: dict[int, Turn]) -> bool:
    """Whether the deadline words occur in the cited turn or within two turns of it (a request and its answer are
    one exchange: either may carry the deadline, either may be the turn cited)."""
    wanted = " ".join(phrase.casefold().split())
    return any(
        wanted in " ".join(by_index[i].text.casefold().split())
        for i in range(turn_index - 2, turn_index + 3)
        if i in by_index
    )


def finish_actions(
    drafts: ActionDrafts, turns: Sequence[Turn], participants: Sequence[Participant], call_started_at: datetime
) -> tuple[list[ExtractedAction], int]:
    """Drafts from either engine -> stored actions: owners mapped, dates resolved, evidence quoted by us.

    What the transcript does not back up is not stored as fact: a deadline phrase that was never spoken near the
    cited turn gives no due date, an owner who is neither a participant nor a speaker gives no owner, and each
    such correction halves the action's confidence and is named in its `warnings`.

    Returns the actions and how many drafts were dropped for citing a turn that does not exist."""
    by_index = {turn.index: turn for turn in turns}
    speakers = {turn.speaker for turn in turns}
    actions: list[ExtractedAction] = []
    seen: set[tuple[int, str, str]] = set()
    dropped = 0
    for draft in drafts.actions:
        turn = by_index.get(draft.turn_index)
        if turn is None:
            dropped += 1
            continue
        key = (draft.turn_index, draft.type.value, re.sub(r"\W+", " ", draft.title.lower()).strip())
        if key in seen:
            continue
        seen.add(key)
        warnings: list[str] = []
        owner = map_owner(draft.owner_speaker, participants, speakers)
        if draft.owner_speaker and owner is None:
            warnings.append("owner_not_in_call")
        due_phrase = draft.due_phrase
        if due_phrase and not _spoken_near(due_phrase, draft.turn_index, by_index):
            warnings.append("due_phrase_not_in_transcript")
            due_phrase = None
        due_at = resolve_phrase(due_phrase, call_started_at) if due_phrase else None
        evidence = f"{turn.speaker}: {turn.text}"
        actions.append(
            ExtractedAction(
                type=draft.type,
                title=draft.title,
                description=draft.description,
                owner=owner.name if owner else None,
                owner_email=owner.email if owner else None,
                due_at=due_at,
                due_phrase=due_phrase if due_at else None,
                confidence=round(draft.confidence * 0.5 ** len(warnings), 2),
                evidence=evidence if len(evidence) <= EVIDENCE_CHARS else evidence[: EVIDENCE_CHARS - 3] + "...",
                turn_index=draft.turn_index,
                warnings=warnings,
            )
        )
    return actions, dropped


def turns_from_transcription(text: str) -> list[Turn]:
    """A transcription with 'Speaker: text' lines keeps its speakers; plain text becomes unattributed sentences."""
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and all(_LABELLED_LINE.match(line) for line in lines):
        return normalise(text)
    return normalise([TurnIn(speaker="Unknown speaker", text=s) for s in sentences(" ".join(lines))])


def extract_offline(turns: Sequence[Turn], participants: Sequence[Participant]) -> ActionDrafts:
    return offline.extract_actions(turns, [p.name for p in participants])


def merge_drafts(parts: Sequence[ActionDrafts]) -> ActionDrafts:
    return ActionDrafts(actions=[action for part in parts for action in part.actions])


def _input_hash(kind: VoiceInputKind, content: Any, started: datetime, participants: list[dict[str, Any]]) -> str:
    """The identity of a request: same content, call start and participants is the same extraction."""
    payload = json.dumps(
        {"kind": kind.value, "content": content, "started": started.isoformat(), "participants": participants},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def extract_voice_actions(
    session: Session,
    *,
    workspace_id: int,
    call_started_at: datetime,
    participants: Sequence[Participant],
    transcript: Sequence[TurnIn] | str | None = None,
    audio: AudioIn | None = None,
) -> dict[str, Any]:
    if call_started_at.tzinfo is None:
        raise BadInput("call_started_at must include a timezone offset")
    if (transcript is None) == (audio is None):
        raise BadInput("give exactly one of transcript or audio")
    _check_team_members(session, workspace_id, participants)
    participant_json = [p.model_dump(mode="json") for p in participants]
    report = EngineReport(engine="offline")
    if audio is not None:
        kind = VoiceInputKind.AUDIO
        audio_bytes = audio.data()
        if len(audio_bytes) > MAX_AUDIO_BYTES:
            raise BadInput("audio is larger than 25 MB")
        key = _input_hash(kind, hashlib.sha256(audio_bytes).hexdigest(), call_started_at, participant_json)
    else:
        kind = VoiceInputKind.TEXT
        try:
            turns = normalise(transcript)  # type: ignore[arg-type]
        except ValueError as exc:
            raise BadInput(f"transcript: {exc}") from exc
        key = _input_hash(kind, [[t.speaker, t.text] for t in turns], call_started_at, participant_json)

    existing = session.execute(
        select(VoiceAction).where(VoiceAction.workspace_id == workspace_id, VoiceAction.input_hash == key)
    ).scalar_one_or_none()
    if existing is not None:
        # A duplicate job or a retry after commit: the first extraction stands, nothing is paid for twice.
        return _result(existing, deduplicated=True, report=None)

    if audio is not None:
        settings = llm_settings()
        if settings is None:
            raise BadInput(
                "audio needs a transcription endpoint (LLM_PROVIDER=openai); the offline engine does not transcribe"
            )
        turns = _transcribe(session, workspace_id, report, settings, audio, audio_bytes)

    def by_model(settings: LLMSettings) -> ActionDrafts:
        names = ", ".join(p.name for p in participants) or "unknown"
        parts = run_model(
            session,
            settings,
            report,
            workspace_id=workspace_id,
            prompt=VOICE_ACTIONS,
            schema=ActionDrafts,
            turns=turns,
            values=lambda text: {
                "participants": names,
                "call_started_at": call_started_at.isoformat(),
                "transcript": text,
            },
        )
        return merge_drafts(parts)

    drafts = with_fallback(report, by_model, lambda: extract_offline(turns, participants))
    actions, dropped = finish_actions(drafts, turns, participants, call_started_at)
    report.dropped_items = dropped
    row_id = session.execute(
        insert(VoiceAction)
        .values(
            workspace_id=workspace_id,
            input_kind=kind,
            transcript=[t.model_dump(mode="json") for t in turns],
            transcript_hash=transcript_hash(turns),
            input_hash=key,
            call_started_at=call_started_at,
            participants=participant_json,
            actions=[a.model_dump(mode="json") for a in actions],
            status=VoiceActionStatus.PENDING_REVIEW,
            engine=report.engine,
            model=report.model if report.engine == "openai" else None,
            prompt_version=report.prompt_version if report.engine == "openai" else None,
        )
        .on_conflict_do_nothing(constraint="uq_voice_actions_workspace_id_input_hash")
        .returning(VoiceAction.id)
    ).scalar_one_or_none()
    row = session.execute(
        select(VoiceAction).where(VoiceAction.workspace_id == workspace_id, VoiceAction.input_hash == key)
    ).scalar_one()
    return _result(row, deduplicated=row_id is None, report=report)


def _check_team_members(session: Session, workspace_id: int, participants: Sequence[Participant]) -> None:
    """A participant's team_member_id must be a member of this workspace: the main app assigns work by it."""
    wanted = {p.team_member_id for p in participants if p.team_member_id is not None}
    if not wanted:
        return
    found = set(
        session.execute(
            select(TeamMember.id).where(TeamMember.id.in_(wanted), TeamMember.workspace_id == workspace_id)
        ).scalars()
    )
    if missing := sorted(wanted - found):
        raise BadInput(f"participants: team_member_id {missing[0]} is not a member of this workspace")


def _transcribe(
    session: Session, workspace_id: int, report: EngineReport, settings: LLMSettings, audio: AudioIn, data: bytes
) -> list[Turn]:
    """The audio's text, cached like a model answer: a retry after a later failure does not pay to transcribe again."""
    model = get_settings().openai_transcription_model
    key = input_hash({"audio_sha256": hashlib.sha256(data).hexdigest(), "content_type": audio.content_type})
    lock_cache_key(session, workspace_id, TRANSCRIPTION_TASK, model, TRANSCRIPTION_VERSION, key)
    cached = cached_json(session, workspace_id, TRANSCRIPTION_TASK, model, TRANSCRIPTION_VERSION, key)
    if cached is not None and isinstance(cached.get("text"), str):
        text = cached["text"]
        report.transcription = "cached"
    else:
        try:
            text = transcribe(settings, model, audio.filename, data, audio.content_type)
        except LLMError as exc:
            if isinstance(exc, LLMUnavailable):
                raise Transient(str(exc), retry_after=exc.retry_after) from exc
            raise BadInput(str(exc)) from exc
        store_json(workspace_id, TRANSCRIPTION_TASK, model, TRANSCRIPTION_VERSION, key, {"text": text})
        report.transcription = "called"
    try:
        return turns_from_transcription(text)
    except ValueError as exc:
        raise BadInput("the transcription is empty") from exc


def _result(row: VoiceAction, *, deduplicated: bool, report: EngineReport | None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "voice_action_id": row.id,
        "status": row.status.value,
        "actions": len(row.actions),
        "deduplicated": deduplicated,
        "engine": row.engine.value,
    }
    if report is not None:
        result["llm"] = report.as_json()
    return result
