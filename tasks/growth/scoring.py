"""Churn-risk scoring: pure, vectorised numpy over a feature matrix (one row per workspace).

Two models share one explanation format so a customer-success manager always sees *why*:

* the **rule model** (documented in README, "Growth"): every feature is mapped to a risk share
  ``r`` in [0, 1] (0 = healthy, 0.5 = neutral / unknown, 1 = alarming) and the score is the
  weighted sum ``sum w_i*r_i`` with weights that add up to 100, so the score is 0-100 by construction.
  Rewritten as ``50 + sum w_i*(r_i - 0.5)``, each term is a signed contribution in points:
  positive raises the risk, negative lowers it.
* the **learned model**: L2-regularised logistic regression (Newton/IRLS, numpy only) on the same
  risk shares, standardised; score = 100*sigmoid(b + sum β_j*z_j). Contributions are β_j*z_j in log-odds
  relative to the average training workspace.

Everything here is deterministic: no random initialisation, a fixed iteration budget, stable sorts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.growth import RiskLevel

FloatArray = NDArray[np.float64]

# Column order of every feature matrix in this module; the SQL in churn.py selects them in this order.
FEATURE_NAMES: tuple[str, ...] = (
    "days_since_last_key_action",
    "stickiness",
    "usage_trend",
    "milestone_share",
    "quota_utilisation",
    "seats_used",
    "nps",
    "tenure_days",
    "plan_tier",
)

# Points per feature; they add up to 100 so the weighted sum of shares in [0, 1] is a 0-100 score.
RULE_WEIGHTS: dict[str, float] = {
    "days_since_last_key_action": 25.0,
    "stickiness": 15.0,
    "usage_trend": 20.0,
    "milestone_share": 10.0,
    "quota_utilisation": 5.0,
    "seats_used": 5.0,
    "nps": 10.0,
    "tenure_days": 5.0,
    "plan_tier": 5.0,
}

# Saturation points of the risk transforms (why each value: see README "Churn risk formula").
IDLE_DAYS_FULL_RISK = 30.0  # a month without a key action is as bad as it gets
STICKINESS_HEALTHY = 0.3  # DAU/MAU of 30 % is a strong B2B product; above it adds no extra safety
SEATS_HEALTHY = 5.0  # five or more active seats: the tool is embedded in a team
TENURE_SETTLED_DAYS = 180.0  # new customers churn most; after half a year tenure stops mattering
TOP_PLAN_TIER = 3.0  # free=0, starter=1, professional=2, enterprise=3

LOW_MAX = 40.0  # low < 40 ≤ medium < 70 ≤ high
MEDIUM_MAX = 70.0
TOP_FACTORS = 3


def usage_trend(last_14: FloatArray, prev_14: FloatArray) -> FloatArray:
    """Relative change of the last 14 days against the 14 before, in [-1, 1].

    Dividing by the larger of the two windows keeps it symmetric and bounded: a drop of 80 % is
    -0.8, doubling is +0.5, nothing in either window is 0 (no evidence either way).
    """
    last = np.asarray(last_14, dtype=np.float64)
    prev = np.asarray(prev_14, dtype=np.float64)
    denominator = np.maximum(np.maximum(last, prev), 1e-12)
    trend = np.where((last == 0) & (prev == 0), 0.0, (last - prev) / denominator)
    return np.clip(trend, -1.0, 1.0)


def risk_shares(features: FloatArray) -> FloatArray:
    """Map raw features (n * 9, NaN = unknown) to risk shares in [0, 1]; unknown becomes neutral 0.5."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(FEATURE_NAMES):
        raise ValueError(f"expected an (n, {len(FEATURE_NAMES)}) feature matrix, got {x.shape}")
    col = {name: x[:, i] for i, name in enumerate(FEATURE_NAMES)}
    with np.errstate(invalid="ignore"):
        shares = np.column_stack(
            [
                np.clip(col["days_since_last_key_action"] / IDLE_DAYS_FULL_RISK, 0.0, 1.0),
                1.0 - np.clip(col["stickiness"] / STICKINESS_HEALTHY, 0.0, 1.0),
                np.clip(0.5 - col["usage_trend"] / 2.0, 0.0, 1.0),
                1.0 - np.clip(col["milestone_share"], 0.0, 1.0),
                1.0 - np.clip(col["quota_utilisation"], 0.0, 1.0),
                1.0 - np.clip((col["seats_used"] - 1.0) / (SEATS_HEALTHY - 1.0), 0.0, 1.0),
                np.clip((100.0 - col["nps"]) / 200.0, 0.0, 1.0),
                1.0 - np.clip(col["tenure_days"] / TENURE_SETTLED_DAYS, 0.0, 1.0),
                1.0 - np.clip(col["plan_tier"] / TOP_PLAN_TIER, 0.0, 1.0),
            ]
        )
    return np.where(np.isnan(shares), 0.5, shares)


RISK_LEVELS: tuple[RiskLevel, ...] = (RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH)


def risk_level_index(scores: FloatArray) -> NDArray[np.int16]:
    """Position in RISK_LEVELS per score: a score on a boundary belongs to the level above (40 is medium)."""
    return np.searchsorted([LOW_MAX, MEDIUM_MAX], np.asarray(scores, dtype=np.float64), side="right").astype(np.int16)


def risk_level(scores: FloatArray) -> list[RiskLevel]:
    return [RISK_LEVELS[i] for i in risk_level_index(scores)]


@dataclass(frozen=True)
class Scored:
    """Scores (n,), signed contributions (n * 9) and the unit those contributions are in."""

    scores: FloatArray
    contributions: FloatArray
    unit: str
    model: str

    def top_factor_arrays(self, k: int = TOP_FACTORS) -> tuple[NDArray[np.intp], FloatArray]:
        """For every row at once: the k feature indices with the largest contributions by size, and those
        contributions (signed), in the same stable order as `top_factors`."""
        order = np.argsort(-np.abs(self.contributions), axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(self.contributions, order, axis=1)

    def top_factors(self, row: int, features: FloatArray, k: int = TOP_FACTORS) -> list[dict[str, Any]]:
        """The k largest contributions by size, with sign, for one workspace (stable tie order)."""
        contrib = self.contributions[row]
        order = np.argsort(-np.abs(contrib), kind="stable")[:k]
        factors: list[dict[str, Any]] = []
        for j in order:
            raw = float(features[row, j])
            factors.append(
                {
                    "feature": FEATURE_NAMES[j],
                    "weight": round(float(contrib[j]), 4),
                    "unit": self.unit,
                    "value": None if math.isnan(raw) else round(raw, 4),
                }
            )
        return factors


def rule_score(features: FloatArray) -> Scored:
    shares = risk_shares(features)
    weights = np.array([RULE_WEIGHTS[name] for name in FEATURE_NAMES])
    contributions = weights * (shares - 0.5)
    scores = np.clip(50.0 + contributions.sum(axis=1), 0.0, 100.0)
    return Scored(scores=scores, contributions=contributions, unit="points", model="rule")


def _sigmoid(z: FloatArray) -> FloatArray:
    # Split by sign so exp never overflows for very confident rows.
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


@dataclass(frozen=True)
class LogisticModel:
    """Logistic regression over standardised risk shares."""

    intercept: float
    coefficients: FloatArray
    means: FloatArray
    stds: FloatArray

    def standardise(self, shares: FloatArray) -> FloatArray:
        return (shares - self.means) / self.stds

    def predict_proba(self, features: FloatArray) -> FloatArray:
        z = self.standardise(risk_shares(features))
        return _sigmoid(self.intercept + z @ self.coefficients)

    def score(self, features: FloatArray) -> Scored:
        z = self.standardise(risk_shares(features))
        contributions = z * self.coefficients
        scores = 100.0 * _sigmoid(self.intercept + contributions.sum(axis=1))
        return Scored(scores=scores, contributions=contributions, unit="log_odds", model="logistic")

    def to_json(self) -> dict[str, Any]:
        return {
            "intercept": self.intercept,
            "coefficients": dict(zip(FEATURE_NAMES, self.coefficients.tolist(), strict=True)),
            "means": dict(zip(FEATURE_NAMES, self.means.tolist(), strict=True)),
            "stds": dict(zip(FEATURE_NAMES, self.stds.tolist(), strict=True)),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogisticModel:
        return cls(
            intercept=float(data["intercept"]),
            coefficients=np.array([data["coefficients"][n] for n in FEATURE_NAMES], dtype=np.float64),
            means=np.array([data["means"][n] for n in FEATURE_NAMES], dtype=np.float64),
            stds=np.array([data["stds"][n] for n in FEATURE_NAMES], dtype=np.float64),
        )


def fit_logistic(
    features: FloatArray, labels: NDArray[Any], l2: float = 1.0, max_iter: int = 50, tol: float = 1e-8
) -> LogisticModel:
    """Fit by Newton's method (IRLS): a handful of exact steps, no learning rate, no randomness.

    The L2 penalty (not on the intercept) keeps the Hessian invertible when a feature is constant
    or the classes separate perfectly.
    """
    shares = risk_shares(features)
    y = np.asarray(labels, dtype=np.float64)
    if shares.shape[0] != y.shape[0]:
        raise ValueError("features and labels differ in length")
    means = shares.mean(axis=0)
    stds = shares.std(axis=0)
    stds = np.where(stds < 1e-9, 1.0, stds)
    z = (shares - means) / stds
    n, d = z.shape
    design = np.hstack([np.ones((n, 1)), z])
    beta = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[0] = 0.0
    for _ in range(max_iter):
        p = _sigmoid(design @ beta)
        gradient = design.T @ (y - p) - penalty * beta
        w = p * (1.0 - p)
        hessian = (design * w[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hessian, gradient)
        beta = beta + step
        if float(np.max(np.abs(step))) < tol:
            break
    return LogisticModel(intercept=float(beta[0]), coefficients=beta[1:].copy(), means=means, stds=stds)


def roc_auc(labels: NDArray[Any], scores: FloatArray) -> float:
    """ROC-AUC as the Mann-Whitney U statistic, ties counted half (average ranks)."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    positives = int(y.sum())
    negatives = int(y.size - positives)
    if positives == 0 or negatives == 0:
        raise ValueError("ROC-AUC needs both classes")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # Average rank of each distinct value = (first rank + last rank) / 2, ranks starting at 1.
    ends = np.cumsum(counts)
    average_rank = ends - (counts - 1) / 2.0
    ranks = average_rank[inverse]
    u = ranks[y].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


# Thresholds for trusting labelled history over the hand weights.
MIN_TRAIN_CLASS = 30  # each class in the training part
MIN_HOLDOUT_CLASS = 10  # each class in the hold-out, so the AUC means something
HOLDOUT_SHARE = 0.2  # the latest 20 % of snapshot dates


@dataclass(frozen=True)
class TrainingOutcome:
    """What training decided and why; stored with the model so the choice is explainable."""

    model: LogisticModel | None
    used: str  # "logistic" or "rule"
    reason: str
    n_train: int = 0
    n_holdout: int = 0
    positives: int = 0
    negatives: int = 0
    holdout_auc: float | None = None
    rule_holdout_auc: float | None = None
    cutoff: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def train_with_time_holdout(
    features: FloatArray, labels: NDArray[Any], times: NDArray[Any], holdout_share: float = HOLDOUT_SHARE
) -> TrainingOutcome:
    """Train on the older snapshots, judge on the newest ones, then refit on all of them.

    The split is by time (never random) because the model is always used on a future it has not
    seen; a random split would leak a workspace's own later days into training. The learned model
    replaces the rule model only if it has enough labels of both classes and ranks the hold-out at
    least as well as the rule model does.
    """
    y = np.asarray(labels, dtype=bool)
    t = np.asarray(times)
    positives = int(y.sum())
    negatives = int(y.size - positives)
    base = {"positives": positives, "negatives": negatives}
    if positives < MIN_TRAIN_CLASS + MIN_HOLDOUT_CLASS or negatives < MIN_TRAIN_CLASS + MIN_HOLDOUT_CLASS:
        return TrainingOutcome(model=None, used="rule", reason="not enough labelled history", **base)
    distinct = np.unique(t)
    if distinct.size < 2:
        return TrainingOutcome(model=None, used="rule", reason="labelled history spans one date only", **base)
    cut_index = max(1, math.floor(distinct.size * (1.0 - holdout_share)))
    cut_index = min(cut_index, distinct.size - 1)
    cutoff = distinct[cut_index]
    holdout = t >= cutoff
    train = ~holdout
    y_train, y_hold = y[train], y[holdout]
    counts = (int(y_train.sum()), int((~y_train).sum()), int(y_hold.sum()), int((~y_hold).sum()))
    common = {**base, "n_train": int(train.sum()), "n_holdout": int(holdout.sum()), "cutoff": cutoff}
    if min(counts[:2]) < MIN_TRAIN_CLASS or min(counts[2:]) < MIN_HOLDOUT_CLASS:
        return TrainingOutcome(model=None, used="rule", reason="a class is too thin on one side of the split", **common)
    x = np.asarray(features, dtype=np.float64)
    candidate = fit_logistic(x[train], y_train)
    auc = roc_auc(y_hold, candidate.predict_proba(x[holdout]))
    rule_auc = roc_auc(y_hold, rule_score(x[holdout]).scores)
    if auc < rule_auc:
        return TrainingOutcome(
            model=None,
            used="rule",
            reason="learned model ranked the hold-out worse than the rule model",
            holdout_auc=auc,
            rule_holdout_auc=rule_auc,
            **common,
        )
    final = fit_logistic(x, y)
    return TrainingOutcome(
        model=final,
        used="logistic",
        reason="enough labelled history; hold-out AUC at least the rule model's",
        holdout_auc=auc,
        rule_holdout_auc=rule_auc,
        **common,
    )
