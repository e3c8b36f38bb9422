"""The gold set of annotated sales-call snippets (gold_voice_actions.json) and the scoring of an engine on it.

Shared by the floor test (tests/ai/test_gold_set.py) and `make bench` (benchmarks/bench_ai.py prints the scores).
An action counts as correct when one predicted action cites one of the gold action's turns and has the same type,
owner and due date (the date in the call's timezone); each gold action is matched at most once, so a duplicate
prediction is a false positive.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.ai import offline
from tasks.ai.schemas import ExtractedAction
from tasks.ai.transcript import normalise
from tasks.ai.voice import Participant, finish_actions

GOLD_PATH = Path(__file__).with_name("gold_voice_actions.json")


@dataclass(frozen=True)
class Snippet:
    id: str
    call_started_at: datetime
    participants: list[str]
    transcript: str
    actions: list[dict[str, Any]]


@dataclass
class Scores:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    # Turn-level detection only (was there an action at that turn?), for reading the errors.
    detected: int = 0

    @property
    def precision(self) -> float:
        predicted = self.true_positives + self.false_positives
        return self.true_positives / predicted if predicted else 0.0

    @property
    def recall(self) -> float:
        gold = self.true_positives + self.false_negatives
        return self.true_positives / gold if gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def line(self) -> str:
        return (
            f"precision {self.precision:.2f}  recall {self.recall:.2f}  f1 {self.f1:.2f}  "
            f"(tp {self.true_positives}, fp {self.false_positives}, fn {self.false_negatives})"
        )


def load_gold() -> list[Snippet]:
    data = json.loads(GOLD_PATH.read_text())
    return [
        Snippet(
            id=item["id"],
            call_started_at=datetime.fromisoformat(item["call_started_at"]),
            participants=item["participants"],
            transcript=item["transcript"],
            actions=item["actions"],
        )
        for item in data["snippets"]
    ]


def predict_offline(snippet: Snippet) -> list[ExtractedAction]:
    turns = normalise(snippet.transcript)
    participants = [Participant(name=name) for name in snippet.participants]
    drafts = offline.extract_actions(turns, snippet.participants)
    actions, _ = finish_actions(drafts, turns, participants, snippet.call_started_at)
    return actions


def _due(action: ExtractedAction, snippet: Snippet) -> str | None:
    if action.due_at is None:
        return None
    return action.due_at.astimezone(snippet.call_started_at.tzinfo).date().isoformat()


def score(snippets: list[Snippet], predict: Callable[[Snippet], list[ExtractedAction]]) -> Scores:
    scores = Scores()
    for snippet in snippets:
        unmatched = list(snippet.actions)
        for action in predict(snippet):
            match = next(
                (
                    gold
                    for gold in unmatched
                    if action.turn_index in gold["turns"]
                    and action.type.value == gold["type"]
                    and action.owner == gold["owner"]
                    and _due(action, snippet) == gold["due"]
                ),
                None,
            )
            if any(action.turn_index in gold["turns"] for gold in snippet.actions):
                scores.detected += 1
            if match is None:
                scores.false_positives += 1
            else:
                unmatched.remove(match)
                scores.true_positives += 1
        scores.false_negatives += len(unmatched)
    return scores
