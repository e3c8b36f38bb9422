"""The structured outputs both engines produce, as pydantic models (the JSON schema the model is asked for).

Model-facing schemas carry turn indexes and the phrases the model saw (`owner_speaker`, `due_phrase`); our code maps
those to participants, resolves dates and quotes evidence itself, so a model cannot invent an owner, a date or a
quote: both engines go through the same finishing code and produce the same final schema.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    # Unknown keys are a schema break: the model answered a different question.
    model_config = ConfigDict(extra="forbid")


class ActionType(StrEnum):
    TASK = "task"
    TICKET = "ticket"
    FOLLOW_UP = "follow_up"


class ActionDraft(Strict):
    """One action as an engine proposes it."""

    type: ActionType
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(max_length=2000)
    owner_speaker: str | None = Field(description="speaker label of the person who committed or was asked")
    due_phrase: str | None = Field(description="the deadline words as spoken, e.g. 'by Friday', or null")
    turn_index: int = Field(ge=0, description="index of the turn that states the action")
    confidence: float = Field(ge=0, le=1)


class ActionDrafts(Strict):
    actions: list[ActionDraft]


class ExtractedAction(BaseModel):
    """One action as stored on a voice_actions row."""

    type: ActionType
    title: str
    description: str
    owner: str | None
    owner_email: str | None = None
    due_at: datetime | None
    due_phrase: str | None = None
    confidence: float = Field(ge=0, le=1)
    evidence: str
    turn_index: int
    # What our checks could not back up in the engine's proposal (e.g. a deadline the transcript does not state);
    # each lowers `confidence`, and a reviewer sees why.
    warnings: list[str] = Field(default_factory=list)


class ReviewedAction(BaseModel):
    """One action as a reviewer left it (an `edited` review): a person's decision carries no model confidence."""

    model_config = ConfigDict(extra="forbid")

    type: ActionType
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    owner: str | None = Field(default=None, max_length=200)
    owner_email: str | None = Field(default=None, max_length=320)
    due_at: datetime | None = None
    # The extracted action this one revises, by its turn; None for an action the reviewer added.
    turn_index: int | None = Field(default=None, ge=0)


class DocType(StrEnum):
    BATTLE_CARD = "battle_card"
    PLAYBOOK = "playbook"
    OBJECTION_HANDLER = "objection_handler"
    FAQ = "faq"


class ObjectionCategory(StrEnum):
    PRICE = "price"
    AUTHORITY = "authority"
    NEED = "need"
    TIMING = "timing"
    COMPETITOR = "competitor"
    TRUST = "trust"


class SourcedPoint(Strict):
    text: str = Field(min_length=1, max_length=1000)
    turns: list[int] = Field(description="indexes of the transcript turns this point came from")


class BattleCard(Strict):
    title: str = Field(min_length=1, max_length=300)
    competitor: str | None
    their_strengths: list[SourcedPoint]
    our_advantages: list[SourcedPoint]
    landmines: list[SourcedPoint]
    talk_track: list[SourcedPoint]
    confidence: float = Field(ge=0, le=1)


class Objection(Strict):
    objection: str = Field(min_length=1, max_length=1000)
    category: ObjectionCategory
    response: str | None = Field(max_length=2000)
    proof_points: list[str]
    turns: list[int]
    confidence: float = Field(ge=0, le=1)


class ObjectionHandler(Strict):
    title: str = Field(min_length=1, max_length=300)
    objections: list[Objection]
    confidence: float = Field(ge=0, le=1)


class FaqItem(Strict):
    question: str = Field(min_length=1, max_length=1000)
    answer: str | None = Field(max_length=2000)
    turns: list[int]
    confidence: float = Field(ge=0, le=1)


class Faq(Strict):
    title: str = Field(min_length=1, max_length=300)
    items: list[FaqItem]
    confidence: float = Field(ge=0, le=1)


class PlaybookStage(Strict):
    name: str = Field(min_length=1, max_length=100)
    steps: list[SourcedPoint]


class Playbook(Strict):
    title: str = Field(min_length=1, max_length=300)
    stages: list[PlaybookStage]
    confidence: float = Field(ge=0, le=1)


KnowledgeBody = BattleCard | ObjectionHandler | Faq | Playbook

DOC_SCHEMAS: dict[DocType, type[KnowledgeBody]] = {
    DocType.BATTLE_CARD: BattleCard,
    DocType.OBJECTION_HANDLER: ObjectionHandler,
    DocType.FAQ: Faq,
    DocType.PLAYBOOK: Playbook,
}
