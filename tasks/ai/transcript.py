"""Transcripts: the two accepted shapes normalised to numbered turns, hashing, and chunking to a token budget."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

# "Speaker Name: text"; the speaker label stops at the first colon and may not be a whole sentence.
_LINE = re.compile(r"^\s*(?P<speaker>[^:\n]{1,80}?)\s*:\s*(?P<text>.*\S)\s*$")
# Sentences end at . ! ? followed by space; "e.g." style abbreviations are rare enough in calls to accept.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class Turn(BaseModel):
    index: int = Field(ge=0)
    speaker: str = Field(min_length=1, max_length=200)
    text: str
    start_seconds: float | None = None


class TurnIn(BaseModel):
    """One turn as callers send it (DESIGN.md: `{speaker, text, start_seconds?}`)."""

    speaker: str = Field(min_length=1, max_length=200)
    text: str = Field(max_length=20_000)
    start_seconds: float | None = Field(default=None, ge=0)


TranscriptIn = list[TurnIn] | str


class TranscriptError(ValueError):
    """The transcript has no usable turns."""


def normalise(transcript: Sequence[TurnIn] | Sequence[dict[str, Any]] | str) -> list[Turn]:
    """Both accepted shapes as numbered turns; a string line without a speaker continues the previous turn."""
    turns: list[Turn] = []
    if isinstance(transcript, str):
        for line in transcript.splitlines():
            if not line.strip():
                continue
            match = _LINE.match(line)
            if match:
                turns.append(Turn(index=len(turns), speaker=match["speaker"].strip(), text=match["text"].strip()))
            elif turns:
                turns[-1].text = f"{turns[-1].text} {line.strip()}"
            else:
                raise TranscriptError("transcript line 1 has no 'Speaker: text' form")
    else:
        for raw in transcript:
            item = raw if isinstance(raw, TurnIn) else TurnIn.model_validate(raw)
            text = " ".join(item.text.split())
            if text:
                turns.append(
                    Turn(index=len(turns), speaker=item.speaker.strip(), text=text, start_seconds=item.start_seconds)
                )
    if not turns:
        raise TranscriptError("transcript has no turns")
    return turns


def transcript_hash(turns: Sequence[Turn]) -> str:
    """Content hash of the turns (speaker and text only): the same conversation hashes the same in either shape."""
    canonical = json.dumps([[t.speaker, t.text] for t in turns], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def estimate_tokens(text: str) -> int:
    """About four characters per token for English (OpenAI's rule of thumb); we count 3.5 to over-estimate.

    No tokenizer download is needed, and erring high keeps room for the prompt and the answer."""
    return math.ceil(len(text) / 3.5) + 1


def render_turn(turn: Turn) -> str:
    return f"[{turn.index}] {turn.speaker}: {turn.text}"


def chunk_turns(turns: Sequence[Turn], token_budget: int) -> list[list[Turn]]:
    """Split turns into consecutive groups that each fit `token_budget` (as rendered for the prompt).

    Turns are never reordered and keep their global index, so items from every part cite real turns.
    A single turn longer than the budget is split at sentence boundaries (then hard-split) into pieces
    that keep the turn's index."""
    if token_budget < 16:
        raise ValueError("token budget too small")
    chunks: list[list[Turn]] = []
    current: list[Turn] = []
    used = 0
    for turn in turns:
        for piece in _split_long_turn(turn, token_budget):
            cost = estimate_tokens(render_turn(piece))
            if current and used + cost > token_budget:
                chunks.append(current)
                current, used = [], 0
            current.append(piece)
            used += cost
    if current:
        chunks.append(current)
    return chunks


def _split_long_turn(turn: Turn, token_budget: int) -> list[Turn]:
    if estimate_tokens(render_turn(turn)) <= token_budget:
        return [turn]
    overhead = estimate_tokens(render_turn(turn.model_copy(update={"text": ""})))
    max_chars = max(16, int((token_budget - overhead - 1) * 3.5))
    pieces: list[str] = []
    buffer = ""
    for sentence in sentences(turn.text):
        while len(sentence) > max_chars:
            if buffer:
                pieces.append(buffer)
                buffer = ""
            pieces.append(sentence[:max_chars])
            sentence = sentence[max_chars:]
        candidate = f"{buffer} {sentence}".strip()
        if len(candidate) > max_chars:
            pieces.append(buffer)
            buffer = sentence
        else:
            buffer = candidate
    if buffer:
        pieces.append(buffer)
    return [turn.model_copy(update={"text": piece}) for piece in pieces]
