"""Wilson bounds and the Beta-posterior comparison of templates (pure)."""

from __future__ import annotations

from math import lgamma

import numpy as np
import pytest

from tasks.sales.stats import beta_prob_best, wilson_interval, wilson_lower_bound


def test_wilson_interval_matches_published_values() -> None:
    # Wilson 95 % interval for 5/10 is 0.2366-0.7634 (Newcombe 1998, table I style check).
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4)
    assert high == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_lower_bound_rewards_sample_size_at_equal_rates() -> None:
    assert wilson_lower_bound(2, 10) < wilson_lower_bound(20, 100) < wilson_lower_bound(200, 1000) < 0.2
    with pytest.raises(ValueError):
        wilson_lower_bound(11, 10)


def test_prob_best_picks_a_clear_winner_and_sums_to_one() -> None:
    arms = beta_prob_best([10, 30, 12], [200, 200, 200])
    assert sum(a.prob_best for a in arms) == pytest.approx(1.0)
    assert arms[1].prob_best > 0.99
    assert arms[1].mean == pytest.approx(31 / 202)
    assert arms[1].ci_low < 30 / 200 < arms[1].ci_high


def test_prob_best_of_equal_arms_is_a_coin_flip_and_reproducible() -> None:
    first = beta_prob_best([20, 20], [100, 100])
    second = beta_prob_best([20, 20], [100, 100])
    assert first == second
    assert first[0].prob_best == pytest.approx(0.5, abs=0.02)


def _exact_prob_first_beats_second(s1: int, n1: int, s2: int, n2: int) -> float:
    """P(X > Y) for X ~ Beta(1+s1, 1+n1-s1), Y ~ Beta(1+s2, 1+n2-s2) by numerical integration on a fine grid."""
    x = np.linspace(0.0, 1.0, 200_001)
    step = x[1] - x[0]

    def density(a: float, b: float) -> np.ndarray:
        inner = np.clip(x, 1e-300, 1.0)
        outer = np.clip(1.0 - x, 1e-300, 1.0)
        return np.exp((a - 1) * np.log(inner) + (b - 1) * np.log(outer) - (lgamma(a) + lgamma(b) - lgamma(a + b)))

    second_cdf = np.cumsum(density(1 + s2, 1 + n2 - s2)) * step
    return float((density(1 + s1, 1 + n1 - s1) * second_cdf).sum() * step)


def test_prob_best_agrees_with_exact_integration_and_is_wary_of_small_samples() -> None:
    # 2/5 looks far better than 50/200 but is much less certain: about 0.82, not a sure winner.
    small, large = beta_prob_best([2, 50], [5, 200])
    exact = _exact_prob_first_beats_second(2, 5, 50, 200)
    assert small.prob_best == pytest.approx(exact, abs=0.01)
    assert 0.7 < small.prob_best < 0.9
    assert large.prob_best == pytest.approx(1 - exact, abs=0.01)
    assert beta_prob_best([], []) == []
    with pytest.raises(ValueError):
        beta_prob_best([1], [1, 2])
