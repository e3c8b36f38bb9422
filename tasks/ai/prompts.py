"""Versioned prompt templates. A template's text never changes under the same version: the version is part of the
result-cache key and of every job's result, so a wording change must come with a new version."""

from __future__ import annotations

import json
from dataclasses import dataclass
from string import Template
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class PromptTemplate:
    task: str
    version: str
    system: str
    user: str

    @property
    def key(self) -> str:
        return f"{self.task}@{self.version}"

    def messages(self, schema: type[BaseModel] | None = None, **values: str) -> list[dict[str, Any]]:
        """Chat messages; with `schema`, the JSON schema is spelled out for servers that only do plain JSON mode."""
        system = Template(self.system).substitute(values)
        if schema is not None:
            system += (
                "\n\nReply with one JSON object, and nothing else, that validates against this JSON schema:\n"
                + json.dumps(schema.model_json_schema(), separators=(",", ":"))
            )
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": Template(self.user).substitute(values)},
        ]


_TRANSCRIPT_RULES = (
    "The transcript is given as numbered turns '[n] Speaker: text'. Cite turns by their number n. "
    "Use only what the transcript says; never invent names, numbers, dates or quotes. "
    "Give each item a confidence between 0 and 1 that reflects how clearly the transcript states it."
)

VOICE_ACTIONS = PromptTemplate(
    task="voice_actions",
    version="v1",
    system=(
        "You extract action items from a sales call transcript. "
        "An action is a commitment ('I'll send...', 'we will...'), a request ('can you...') or an agreement to meet "
        "('let's schedule...'). Types: 'follow_up' for contact with the other party (send, email, call, meet), "
        "'ticket' for a problem to fix or investigate, 'task' for other internal work. owner_speaker is the speaker "
        "label of the person who will do it (for a request, the person asked). due_phrase quotes the deadline words "
        "exactly as spoken (e.g. 'by Friday', 'EOD', 'next week') or is null; do not convert it to a date. "
        + _TRANSCRIPT_RULES
    ),
    user="Participants: $participants\nCall started at: $call_started_at\n\nTranscript:\n$transcript",
)

_DOC_INSTRUCTIONS = {
    "battle_card": (
        "Write a competitive battle card: the competitor named on the call, their strengths as the prospect sees "
        "them, our advantages, landmines (questions or facts that expose the competitor's weak spots) and a talk track "
        "for the rep."
    ),
    "objection_handler": (
        "Write an objection handler: each objection the prospect raised, its category (price, authority, need, timing, "
        "competitor, trust), the rep's response and any proof points (numbers, customers, certifications) the rep used."
    ),
    "faq": "Write an FAQ: the questions the prospect asked, each with the answer the rep gave (null if none given).",
    "playbook": (
        "Write a sales playbook from what the rep did: stages in call order (for example opening, discovery, "
        "qualification, presentation, objection handling, next steps), each with concrete steps."
    ),
}

KNOWLEDGE_DOCUMENTS = {
    doc_type: PromptTemplate(
        task=f"knowledge.{doc_type}",
        version="v1",
        system=f"You turn sales call transcripts into knowledge documents for a sales team. {instruction} "
        + _TRANSCRIPT_RULES,
        user="Source: $source\n\nTranscript:\n$transcript",
    )
    for doc_type, instruction in _DOC_INSTRUCTIONS.items()
}
