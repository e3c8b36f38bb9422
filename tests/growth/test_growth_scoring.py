"""Pure churn-scoring maths: rule model, logistic regression, ROC-AUC, time hold-out."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.growth import scoring
from tasks.growth.scoring import FEATURE_NAMES, RiskLevel


def _row(**values: float) -> list[float]:
    defaults = {
        "days_since_last_key_action": 1.0,
        "stickiness": 0.3,
        "usage_trend": 0.0,
        "milestone_share": 0.5,
        "quota_utilisation": 0.5,
        "seats_used": 3.0,
        "nps": 0.0,
        "tenure_days": 90.0,
        "plan_tier": 1.0,
    }
    defaults.update(values)
    return [defaults[name] for name in FEATURE_NAMES]


IDLE_DECLINING_DETRACTOR = _row(
    days_since_last_key_action=40,
    stickiness=0.0,
    usage_trend=-0.8,
    milestone_share=0.3,
    quota_utilisation=0.02,
    seats_used=1,
    nps=-100,
    tenure_days=200,
    plan_tier=1,
)
ACTIVE_GROWING = _row(
    days_since_last_key_action=0,
    stickiness=0.5,
    usage_trend=0.5,
    milestone_share=0.8,
    quota_utilisation=0.6,
    seats_used=6,
    nps=100,
    tenure_days=100,
    plan_tier=2,
)


def test_usage_trend_is_symmetric_and_bounded() -> None:
    trend = scoring.usage_trend(np.array([20.0, 200.0, 0.0, 0.0, 100.0]), np.array([100.0, 100.0, 0.0, 50.0, 0.0]))
    assert trend.tolist() == pytest.approx([-0.8, 0.5, 0.0, -1.0, 1.0])


def test_rule_model_known_answers() -> None:
    features = np.array([IDLE_DECLINING_DETRACTOR, ACTIVE_GROWING])
    scored = scoring.rule_score(features)
    # Hand-computed from the README formula: sum weight * risk share.
    expected_high = 25 * 1 + 15 * 1 + 20 * 0.9 + 10 * 0.7 + 5 * 0.98 + 5 * 1 + 10 * 1 + 5 * 0 + 5 * (2 / 3)
    expected_low = 25 * 0 + 15 * 0 + 20 * 0.25 + 10 * 0.2 + 5 * 0.4 + 5 * 0 + 10 * 0 + 5 * (1 - 100 / 180) + 5 * (1 / 3)
    assert scored.scores.tolist() == pytest.approx([expected_high, expected_low])
    assert scoring.risk_level(scored.scores) == [RiskLevel.HIGH, RiskLevel.LOW]
    # The score is 50 + the signed contributions, so the factors explain it exactly.
    assert (50 + scored.contributions.sum(axis=1)).tolist() == pytest.approx(scored.scores.tolist())


def test_top_factors_are_signed_and_ordered() -> None:
    features = np.array([IDLE_DECLINING_DETRACTOR, ACTIVE_GROWING])
    scored = scoring.rule_score(features)
    high = scored.top_factors(0, features)
    assert [f["feature"] for f in high] == ["days_since_last_key_action", "usage_trend", "stickiness"]
    assert high[0] == {"feature": "days_since_last_key_action", "weight": 12.5, "unit": "points", "value": 40.0}
    assert all(f["weight"] > 0 for f in high)
    low = scored.top_factors(1, features)
    assert all(f["weight"] < 0 for f in low)
    assert low[0]["feature"] == "days_since_last_key_action"


def test_unknown_nps_is_neutral() -> None:
    with_nan = np.array([_row(nps=float("nan"))])
    neutral = np.array([_row(nps=0.0)])
    assert scoring.rule_score(with_nan).scores[0] == pytest.approx(scoring.rule_score(neutral).scores[0])
    nps_factor = [f for f in scoring.rule_score(with_nan).top_factors(0, with_nan, k=9) if f["feature"] == "nps"]
    assert nps_factor == [{"feature": "nps", "weight": 0.0, "unit": "points", "value": None}]


def test_levels_at_boundaries() -> None:
    assert scoring.risk_level(np.array([0.0, 39.999, 40.0, 69.999, 70.0, 100.0])) == [
        RiskLevel.LOW,
        RiskLevel.LOW,
        RiskLevel.MEDIUM,
        RiskLevel.MEDIUM,
        RiskLevel.HIGH,
        RiskLevel.HIGH,
    ]


def test_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError):
        scoring.rule_score(np.zeros((3, 4)))


def test_roc_auc_matches_pairwise_definition() -> None:
    labels = np.array([1, 0, 1, 0, 1, 0, 0])
    scores = np.array([0.9, 0.1, 0.4, 0.4, 0.8, 0.3, 0.95])
    pos = scores[labels == 1]
    neg = scores[labels == 0]
    pairwise = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg])
    assert scoring.roc_auc(labels, scores) == pytest.approx(pairwise)
    assert scoring.roc_auc(np.array([0, 1]), np.array([0.1, 0.9])) == 1.0
    with pytest.raises(ValueError):
        scoring.roc_auc(np.array([1, 1]), np.array([0.1, 0.9]))


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Workspaces whose churn depends on idleness and trend only, so a learner can beat the rule weights."""
    rng = np.random.default_rng(seed)
    idle = rng.uniform(0, 60, n)
    trend = rng.uniform(-1, 1, n)
    other = rng.uniform(0, 1, (n, 7))
    features = np.column_stack(
        [
            idle,
            other[:, 0] * 0.5,
            trend,
            other[:, 1],
            other[:, 2],
            1 + other[:, 3] * 8,
            other[:, 4] * 200 - 100,
            other[:, 5] * 400,
            np.floor(other[:, 6] * 4),
        ]
    )
    logit = -3.0 + 0.12 * idle - 2.0 * trend
    labels = rng.uniform(0, 1, n) < 1 / (1 + np.exp(-logit))
    times = np.sort(rng.integers(0, 20, n))
    return features, labels, times


def test_logistic_regression_recovers_signal_and_is_deterministic() -> None:
    features, labels, times = _synthetic(3000, seed=7)
    first = scoring.train_with_time_holdout(features, labels, times)
    second = scoring.train_with_time_holdout(features, labels, times)
    assert first.used == "logistic", first.reason
    assert first.model is not None and second.model is not None
    assert first.holdout_auc is not None and first.holdout_auc > 0.8
    assert first.holdout_auc >= (first.rule_holdout_auc or 0)
    np.testing.assert_array_equal(first.model.coefficients, second.model.coefficients)
    coef = dict(zip(FEATURE_NAMES, first.model.coefficients, strict=True))
    # Risk shares grow with idleness and with decline, so both learned weights are positive and dominant.
    assert coef["days_since_last_key_action"] > 0.5
    assert coef["usage_trend"] > 0.5
    assert max(abs(coef[n]) for n in FEATURE_NAMES if n not in {"days_since_last_key_action", "usage_trend"}) < 0.3
    # The hold-out is the latest dates only.
    assert first.n_holdout > 0 and first.n_train + first.n_holdout == 3000
    assert int(times[times >= first.cutoff].min()) == int(first.cutoff)
    scored = first.model.score(features[:5])
    assert ((scored.scores >= 0) & (scored.scores <= 100)).all()
    rebuilt = scoring.LogisticModel.from_json(first.model.to_json())
    np.testing.assert_allclose(rebuilt.score(features[:5]).scores, scored.scores)


def test_training_falls_back_without_enough_labels() -> None:
    features, labels, times = _synthetic(3000, seed=3)
    few = labels.copy()
    few[np.flatnonzero(few)[20:]] = False
    outcome = scoring.train_with_time_holdout(features, few, times)
    assert outcome.used == "rule" and outcome.model is None
    assert outcome.reason == "not enough labelled history"
    one_date = scoring.train_with_time_holdout(features, labels, np.zeros(3000))
    assert one_date.used == "rule" and "one date" in one_date.reason


def test_training_falls_back_when_history_contradicts_the_rule() -> None:
    features, _, times = _synthetic(1200, seed=11)
    rule_says = scoring.rule_score(features).scores > np.median(scoring.rule_score(features).scores)
    # Behaviour flipped over time: early labels are the rule's opposite, the latest ones agree with it.
    late = times >= 16
    labels = np.where(late, rule_says, ~rule_says)
    outcome = scoring.train_with_time_holdout(features, labels, times)
    assert outcome.used == "rule" and outcome.model is None
    assert outcome.holdout_auc is not None and outcome.rule_holdout_auc is not None
    assert outcome.holdout_auc < 0.5 < outcome.rule_holdout_auc


def test_vectorised_top_factors_match_the_per_row_explanation() -> None:
    features, _, _ = _synthetic(400, seed=13)
    features[::7, FEATURE_NAMES.index("nps")] = np.nan
    for scored in (scoring.rule_score(features), scoring.fit_logistic(features, features[:, 0] > 30).score(features)):
        indices, weights = scored.top_factor_arrays()
        assert indices.shape == weights.shape == (400, scoring.TOP_FACTORS)
        for row in range(400):
            expected = scored.top_factors(row, features)
            assert [FEATURE_NAMES[j] for j in indices[row]] == [f["feature"] for f in expected]
            assert np.round(weights[row], 4).tolist() == pytest.approx([f["weight"] for f in expected], abs=1e-12)


def test_level_index_and_levels_agree() -> None:
    scores = np.array([0.0, 39.999, 40.0, 69.999, 70.0, 100.0])
    assert scoring.risk_level_index(scores).tolist() == [0, 0, 1, 1, 2, 2]
    assert [scoring.RISK_LEVELS[i] for i in scoring.risk_level_index(scores)] == scoring.risk_level(scores)
