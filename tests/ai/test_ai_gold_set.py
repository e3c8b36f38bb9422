"""The offline engine on annotated snippets: precision and recall of actions (type, owner and due date all right).

Two sets (tests/ai/gold.py). The gold set was written with the rules in view: its floors sit just under what the
rules measured when it was annotated (precision 0.88, recall 0.72 on 60 actions in 34 snippets) and guard against
regressions. The held-out set was written later, in fresh phrasing, annotated before the rules were run on it and
never tuned against; its floors are what the rules measured on that first run (precision 0.64 = 9/14, recall
0.36 = 9/25) rounded down, and are the honest figure for calls the rules have not seen. `make bench` prints both.
"""

from __future__ import annotations

import re

from tests.ai.gold import Snippet, calibration_line, confidences, load_gold, load_heldout, predict_offline, score

PRECISION_FLOOR = 0.85
RECALL_FLOOR = 0.70
HELDOUT_PRECISION_FLOOR = 0.60
HELDOUT_RECALL_FLOOR = 0.35


def _well_formed(snippets: list[Snippet]) -> None:
    assert any(not s.actions for s in snippets)  # calls with nothing to do keep precision honest
    for snippet in snippets:
        assert snippet.call_started_at.tzinfo is not None
        turns = len(snippet.transcript.splitlines())
        for action in snippet.actions:
            assert action["type"] in {"task", "ticket", "follow_up"}
            assert action["owner"] in snippet.participants
            assert action["turns"] and all(0 <= t < turns for t in action["turns"])


def test_the_gold_set_is_big_enough_and_well_formed() -> None:
    snippets = load_gold()
    assert len(snippets) >= 30
    assert sum(len(s.actions) for s in snippets) >= 50
    _well_formed(snippets)


def test_the_heldout_set_is_separate_from_the_gold_set() -> None:
    heldout, gold = load_heldout(), load_gold()
    assert len(heldout) >= 12
    assert sum(len(s.actions) for s in heldout) >= 20
    _well_formed(heldout)
    assert not {s.id for s in heldout} & {s.id for s in gold}

    def spoken(snippets: list[Snippet]) -> set[str]:
        lines = (line.split(":", 1)[1] for s in snippets for line in s.transcript.splitlines())
        return {re.sub(r"\W+", " ", line.lower()).strip() for line in lines}

    # Not one line reused: the held-out figures are about phrasing the rules were not written for.
    assert not spoken(heldout) & spoken(gold)


def test_offline_engine_precision_and_recall_stay_above_the_floors() -> None:
    scores = score(load_gold(), predict_offline)
    print(f"gold set (offline engine): {scores.line()}")
    assert scores.precision >= PRECISION_FLOOR, scores.line()
    assert scores.recall >= RECALL_FLOOR, scores.line()


def test_offline_engine_on_the_heldout_set() -> None:
    scores = score(load_heldout(), predict_offline)
    print(f"held-out set (offline engine): {scores.line()}")
    assert scores.precision >= HELDOUT_PRECISION_FLOOR, scores.line()
    assert scores.recall >= HELDOUT_RECALL_FLOOR, scores.line()
    # Far under the gold figures: the difference is how much the rules were fitted to the gold set's phrasing.
    assert scores.recall < score(load_gold(), predict_offline).recall


def test_confidence_is_higher_for_correct_actions_than_for_wrong_ones_on_the_gold_set() -> None:
    """On the gold set, what the rules get right they are surer of than what they get wrong (by a small margin).

    On the held-out set this does not hold (wrong items averaged 0.80, right ones 0.76 on first run): the offline
    confidence is a cue-strength score, not a calibrated probability. Printed here and by `make bench`."""
    right, wrong = confidences(load_gold(), predict_offline)
    assert right and wrong
    assert sum(right) / len(right) > sum(wrong) / len(wrong)
    print(f"gold {calibration_line(load_gold(), predict_offline)}")
    print(f"held-out {calibration_line(load_heldout(), predict_offline)}")
