"""Small-sample statistics for outbound learning: Wilson bounds and Beta-posterior comparisons.

Pure functions, deterministic (the Monte-Carlo draws use a fixed seed), numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# 95 % two-sided normal quantile: the lower bound of a 95 % Wilson interval.
Z_95 = 1.959963984540054
# Enough draws that P(best) is stable to about ±0.005 (binomial standard error at p=0.5: 0.5/√10⁴ ≈ 0.005),
# few enough that a workspace with 50 templates is still a few milliseconds.
DEFAULT_DRAWS = 20_000
DEFAULT_SEED = 20_240_601


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when there are no trials.

    Unlike the normal (Wald) interval it stays inside [0, 1] and is honest at small n and extreme rates,
    which is exactly the regime of a rare industry with a handful of replies.
    """
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError("successes must be between 0 and trials")
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = p + z2 / (2 * trials)
    margin = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, (centre - margin) / denominator), min(1.0, (centre + margin) / denominator)


def wilson_lower_bound(successes: int, trials: int, z: float = Z_95) -> float:
    return wilson_interval(successes, trials, z)[0]


@dataclass(frozen=True)
class ArmPosterior:
    """Beta(1 + successes, 1 + failures) posterior of one arm (uniform prior)."""

    mean: float
    ci_low: float
    ci_high: float
    prob_best: float


def beta_prob_best(
    successes: Sequence[int], trials: Sequence[int], draws: int = DEFAULT_DRAWS, seed: int = DEFAULT_SEED
) -> list[ArmPosterior]:
    """Posterior of each arm's rate and the probability that it is the best arm, by Monte-Carlo.

    Each arm's rate is drawn from its Beta posterior; P(best) is the share of draws in which that arm's
    rate is the highest. The fixed seed makes the answer reproducible from one night to the next, so a
    template's ranking only moves when its data moves.
    """
    if len(successes) != len(trials):
        raise ValueError("successes and trials must have the same length")
    if not successes:
        return []
    s = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if np.any(s < 0) or np.any(s > n):
        raise ValueError("successes must be between 0 and trials")
    rng = np.random.default_rng(seed)
    samples = rng.beta(1.0 + s, 1.0 + n - s, size=(draws, len(s)))
    wins = np.bincount(np.argmax(samples, axis=1), minlength=len(s)) / draws
    low, high = np.quantile(samples, [0.025, 0.975], axis=0)
    means = (1.0 + s) / (2.0 + n)
    return [
        ArmPosterior(mean=float(means[i]), ci_low=float(low[i]), ci_high=float(high[i]), prob_best=float(wins[i]))
        for i in range(len(s))
    ]
