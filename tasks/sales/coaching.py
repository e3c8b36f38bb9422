"""Coaching recommendations for a rep's day: offline rules, or the LLM layer with the rules as fallback.

Coaching is written only for today's rows. What decides whether a rep is coached again is the *situation*: the
set of offline rules that fire (category, priority, title). A team's percentiles and medians move a little with
every sync; a digest of the exact figures would send every rep to the LLM every 5 minutes and, past the per-sync
budget, replace good LLM advice with the rules. So LLM advice stands until the rep's situation changes; offline
advice (which quotes figures) is rewritten only when its text changes. The LLM gets a bounded number of reps per
sync, weakest first; the rest get the offline rules at once and are upgraded on later syncs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from models.sales import CoachingSource
from tasks.ai.llm import LLMError, LLMSettings, LLMUnavailable, complete_structured
from tasks.ai.prompts import PromptTemplate
from workers.settings import get_settings

log = logging.getLogger(__name__)

MAX_RECOMMENDATIONS = 4
# LLM calls per sync: a 1,000-rep team would otherwise hold the analytics queue for many minutes.
LLM_REPS_PER_SYNC = 25

# Thresholds of the offline rules (why each: README, "Sales").
LOW = 0.25  # bottom quartile of the team
HIGH = 0.75  # top quartile
MIN_SENDS_FOR_RATE = 20  # below this a reply rate is mostly noise
MIN_BOOKED_FOR_SHOW_RATE = 5
HEALTHY_SHOW_RATE = 0.7  # about the usual B2B meeting show rate
LOW_OPEN_RATE = 0.3
DROP = -0.3  # a 30 % fall against the prior week is a trend, not noise
RISE = 0.3


class Category(StrEnum):
    ACTIVITY = "activity"
    MESSAGING = "messaging"
    MEETINGS = "meetings"
    PIPELINE = "pipeline"
    CLOSING = "closing"
    RECOGNITION = "recognition"


class Priority(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


_PRIORITY_ORDER = {Priority.HIGH: 0, Priority.MEDIUM: 1, Priority.LOW: 2}


class Recommendation(BaseModel):
    """One coaching recommendation (the schema the LLM is asked for, too)."""

    model_config = ConfigDict(extra="forbid")

    category: Category
    priority: Priority
    title: str = Field(min_length=1, max_length=120)
    detail: str = Field(min_length=1, max_length=600)


class Recommendations(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recommendations: list[Recommendation] = Field(min_length=1, max_length=MAX_RECOMMENDATIONS)


@dataclass(frozen=True)
class CoachingInput:
    """What a rep's coaching is written from: the day's score, its components, insights and rates."""

    performance_score: float
    components: dict[str, Any]
    insights: dict[str, Any]
    conversion_rates: dict[str, Any]
    funnel: list[Any]

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> CoachingInput:
        """From `tasks.sales.salesboard.board_view` of a stored row."""
        return cls(
            performance_score=view["performance_score"],
            components=view["score_components"],
            insights=view["insights"],
            conversion_rates=view["conversion_rates"],
            funnel=view["funnel"],
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "performance_score": self.performance_score,
            "components": self.components,
            "insights": self.insights,
            "conversion_rates": self.conversion_rates,
            "funnel": self.funnel,
        }

    def percentile(self, component: str) -> float:
        return float(self.components.get(component, {}).get("percentile", 0.5))

    def value(self, component: str) -> float:
        return float(self.components.get(component, {}).get("value") or 0)

    def median(self, component: str) -> float:
        return float(self.components.get(component, {}).get("team_median") or 0)

    def rate(self, name: str) -> float | None:
        value = self.conversion_rates.get(name)
        return None if value is None else float(value)

    def funnel_count(self, stage: str) -> int:
        return next((int(step["count"]) for step in self.funnel if step.get("stage") == stage), 0)

    def trend(self, metric: str, key: str = "change_vs_prior_7d") -> float | None:
        value = self.insights.get("trends", {}).get(metric, {}).get(key)
        return None if value is None else float(value)


_LABELS = {
    "activity": "outreach volume (calls + emails, 7 days)",
    "reply_rate": "email reply rate (30 days)",
    "meetings": "meetings booked and held (7 days)",
    "pipeline": "open pipeline",
    "wins": "won value (30 days)",
}


def offline_recommendations(inputs: CoachingInput) -> list[Recommendation]:
    """Deterministic rules over the rep's team percentiles, conversion rates and trends."""
    recs: list[Recommendation] = []
    add = recs.append
    if inputs.percentile("activity") <= LOW:
        add(
            Recommendation(
                category=Category.ACTIVITY,
                priority=Priority.HIGH,
                title="Raise outreach volume",
                detail=(
                    f"{inputs.value('activity'):.0f} calls and emails in the last 7 days against a team median of "
                    f"{inputs.median('activity'):.0f}. Block a fixed prospecting hour every morning."
                ),
            )
        )
    sent = inputs.funnel_count("emails_sent")
    if inputs.percentile("reply_rate") <= LOW and sent >= MIN_SENDS_FOR_RATE:
        open_rate = inputs.rate("sent_to_opened")
        if open_rate is not None and open_rate < LOW_OPEN_RATE:
            how = f"Only {open_rate:.0%} of emails are opened: test new subject lines and sending times."
        else:
            how = "Emails are opened but not answered: shorten the body, personalise the first line, one clear ask."
        add(
            Recommendation(
                category=Category.MESSAGING,
                priority=Priority.HIGH,
                title="Rework email messaging",
                detail=(
                    f"Reply rate {inputs.value('reply_rate'):.1%} on {sent} emails against a team median of "
                    f"{inputs.median('reply_rate'):.1%}. {how}"
                ),
            )
        )
    if inputs.percentile("meetings") <= LOW:
        add(
            Recommendation(
                category=Category.MEETINGS,
                priority=Priority.HIGH,
                title="Turn conversations into meetings",
                detail=(
                    f"{inputs.value('meetings'):.0f} meetings in 7 days against a team median of "
                    f"{inputs.median('meetings'):.0f}. Offer two concrete time slots in every positive reply."
                ),
            )
        )
    booked = inputs.funnel_count("meetings_booked")
    show_rate = inputs.rate("booked_to_held")
    if show_rate is not None and booked >= MIN_BOOKED_FOR_SHOW_RATE and show_rate < HEALTHY_SHOW_RATE:
        add(
            Recommendation(
                category=Category.MEETINGS,
                priority=Priority.MEDIUM,
                title="Cut meeting no-shows",
                detail=(
                    f"{show_rate:.0%} of {booked} booked meetings were held. Confirm a day ahead with an agenda "
                    "and a calendar invite from the prospect's side."
                ),
            )
        )
    if inputs.percentile("wins") <= LOW and inputs.percentile("pipeline") >= 0.5:
        add(
            Recommendation(
                category=Category.CLOSING,
                priority=Priority.HIGH,
                title="Close the pipeline you have",
                detail=(
                    "Open pipeline is at or above the team median but won value is in the bottom quartile. "
                    "Review every late-stage deal for a next step with a date."
                ),
            )
        )
    elif inputs.percentile("pipeline") <= LOW:
        add(
            Recommendation(
                category=Category.PIPELINE,
                priority=Priority.MEDIUM,
                title="Build pipeline",
                detail=(
                    f"Open pipeline is in the team's bottom quartile (median "
                    f"{inputs.median('pipeline') / 100:,.0f}). Qualify the meetings you hold into deals sooner."
                ),
            )
        )
    for metric, label in (("calls", "Calls"), ("emails_sent", "Emails sent")):
        change = inputs.trend(metric)
        if change is not None and change <= DROP:
            add(
                Recommendation(
                    category=Category.ACTIVITY,
                    priority=Priority.MEDIUM,
                    title=f"{label} are slipping",
                    detail=f"{label} fell {-change:.0%} against the previous 7 days. Get back to last week's rhythm.",
                )
            )
            break
    meetings_change = inputs.trend("meetings_booked")
    if meetings_change is not None and meetings_change >= RISE:
        add(
            Recommendation(
                category=Category.RECOGNITION,
                priority=Priority.LOW,
                title="Meetings are climbing",
                detail=f"Meetings booked rose {meetings_change:.0%} against the previous 7 days: keep the cadence.",
            )
        )
    strengths = [s for s in inputs.insights.get("strengths", []) if s in _LABELS]
    if strengths:
        add(
            Recommendation(
                category=Category.RECOGNITION,
                priority=Priority.LOW,
                title="Share what works",
                detail=f"Top quartile of the team for {_LABELS[strengths[0]]}: walk a teammate through your approach.",
            )
        )
    if not recs:
        weakest = min(_LABELS, key=lambda c: (inputs.percentile(c), c))
        add(
            Recommendation(
                category=Category.ACTIVITY,
                priority=Priority.LOW,
                title="Keep the rhythm",
                detail=f"No weak spot against the team; the most room to grow is {_LABELS[weakest]}.",
            )
        )
    recs.sort(key=lambda r: _PRIORITY_ORDER[r.priority])
    return recs[:MAX_RECOMMENDATIONS]


class Coach(Protocol):
    """Writes one rep's recommendations; returns them with the engine that actually produced them."""

    source: CoachingSource

    def recommend(self, inputs: CoachingInput) -> tuple[list[Recommendation], CoachingSource]: ...


class OfflineCoach:
    source = CoachingSource.OFFLINE

    def recommend(self, inputs: CoachingInput) -> tuple[list[Recommendation], CoachingSource]:
        return offline_recommendations(inputs), CoachingSource.OFFLINE


def situation_digest(recommendations: Sequence[Recommendation]) -> str:
    """Digest of which rules fire: what a rep's coaching is about, without the figures it quotes."""
    situation = sorted((r.category.value, r.priority.value, r.title) for r in recommendations)
    return hashlib.sha256(json.dumps(situation, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class CoachingCandidate:
    """One of today's board rows and the coaching it has."""

    row_id: int
    inputs: CoachingInput
    source: CoachingSource | None
    situation_hash: str | None
    recommendations: list[Any]


def plan_coaching(candidates: Sequence[CoachingCandidate], coach: Coach) -> list[dict[str, Any]]:
    """Bulk-update parameters for the rows whose coaching must be (re)written, in the candidates' order."""
    updates: list[dict[str, Any]] = []
    llm_calls = 0
    for candidate in candidates:
        rules = offline_recommendations(candidate.inputs)
        situation = situation_digest(rules)
        same_situation = candidate.situation_hash == situation
        if candidate.source is CoachingSource.LLM and same_situation:
            # LLM advice for this situation still holds, whichever engine this sync has.
            continue
        if coach.source is CoachingSource.LLM and llm_calls < LLM_REPS_PER_SYNC:
            llm_calls += 1
            recs, source = coach.recommend(candidate.inputs)
        else:
            recs, source = rules, CoachingSource.OFFLINE
        written = [r.model_dump(mode="json") for r in recs]
        if source is candidate.source and same_situation and written == candidate.recommendations:
            continue
        updates.append(
            {
                "id": candidate.row_id,
                "coaching_recommendations": written,
                "coaching_source": source,
                "coaching_input_hash": situation,
            }
        )
    return updates


COACHING_PROMPT = PromptTemplate(
    task="sales.coaching",
    version="v1",
    system=(
        "You are a sales coach. From one sales rep's metrics you write at most "
        f"{MAX_RECOMMENDATIONS} short, concrete, actionable coaching recommendations, most important first. "
        "Percentiles compare the rep with their own team that day (0 = lowest, 1 = highest); rates are fractions; "
        "money is in cents. Ground every recommendation in the numbers given; never invent numbers. "
        "Categories: activity, messaging, meetings, pipeline, closing, recognition. Priorities: high, medium, low."
    ),
    user="Rep metrics (JSON):\n$metrics",
)


class LLMCoach:
    """Coaching from the LLM layer; any LLM failure falls back to the offline rules for that rep.

    One instance serves one sync: once the provider is unavailable (timeouts, 5xx, 429 past the retries) the
    rest of the sync uses the offline rules at once instead of waiting out the same outage rep after rep.
    """

    source = CoachingSource.LLM

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self.unavailable = False

    def recommend(self, inputs: CoachingInput) -> tuple[list[Recommendation], CoachingSource]:
        if self.unavailable:
            return offline_recommendations(inputs), CoachingSource.OFFLINE
        metrics = json.dumps(inputs.as_dict(), sort_keys=True, default=str)
        try:
            completion = complete_structured(self.settings, COACHING_PROMPT, Recommendations, {"metrics": metrics})
        except LLMError as exc:
            self.unavailable = isinstance(exc, LLMUnavailable)
            # The reason names the condition only (the LLM layer never puts prompt or answer text in messages).
            log.warning("coaching llm failed, using offline rules: %s", exc)
            return offline_recommendations(inputs), CoachingSource.OFFLINE
        return completion.output.recommendations, CoachingSource.LLM


def default_coach() -> Coach:
    """The LLM coach when an OpenAI-compatible provider is configured, else the offline rules."""
    settings = get_settings()
    if settings.llm_provider != "openai" or not settings.openai_api_key:
        return OfflineCoach()
    return LLMCoach(
        LLMSettings(
            model=settings.openai_model,
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            timeout_seconds=settings.llm_timeout_seconds,
            # A sync serves a whole team: one quick retry per rep, then the offline rules, rather than a long wait.
            max_attempts=min(2, settings.llm_max_attempts),
            max_inline_wait_seconds=5.0,
            max_completion_tokens=1024,
        )
    )
