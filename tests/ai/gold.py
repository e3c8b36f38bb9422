"""The annotated sales-call snippets and the scoring of an engine on them.

Two sets: gold_voice_actions.json (34 snippets, written alongside the rules, so the rules were tuned with it in
view) and heldout_voice_actions.json (14 snippets written later in fresh phrasing and never tuned against): the
held-out figures are the honest estimate of how the rules do on calls they have not seen.

Shared by the floor tests (tests/ai/test_ai_gold_set.py) and `make bench` (benchmarks/bench_ai.py prints the scores).
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
HELDOUT_PATH = Path(__file__).with_name("heldout_voice_actions.json")


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
    return load_snippets(GOLD_PATH)


def load_heldout() -> list[Snippet]:
    return load_snippets(HELDOUT_PATH)


def load_snippets(path: Path) -> list[Snippet]:
    data = json.loads(path.read_text())
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


Predictor = Callable[[Snippet], list[ExtractedAction]]


def confidences(snippets: list[Snippet], predict: Predictor) -> tuple[list[float], list[float]]:
    """The confidences of the predictions that were right and of those that were wrong."""
    right: list[float] = []
    wrong: list[float] = []
    for snippet in snippets:
        for action in predict(snippet):
            matched = score([snippet], lambda _s, a=action: [a]).true_positives == 1
            (right if matched else wrong).append(action.confidence)
    return right, wrong


def calibration_line(snippets: list[Snippet], predict: Predictor) -> str:
    """Precision per confidence band: does a higher confidence mean a likelier right answer?"""
    right, wrong = confidences(snippets, predict)
    parts = []
    for low, high in ((0.0, 0.7), (0.7, 0.8), (0.8, 1.01)):
        hits = sum(1 for c in right if low <= c < high)
        total = hits + sum(1 for c in wrong if low <= c < high)
        band = f"[{low:.1f}, {min(high, 1.0):.1f}{']' if high > 1 else ')'}"
        parts.append(f"{band} {hits}/{total} right" if total else f"{band} none")
    return "confidence bands: " + ", ".join(parts)
