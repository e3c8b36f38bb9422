"""NPS arithmetic: categories, exact value, 95 % margin of error, thin flag."""

from __future__ import annotations

import math

import pytest

from tasks.growth.nps_math import NPSCategory, NPSSummary, categorise, summarise


@pytest.mark.parametrize(
    ("score", "category"),
    [
        (0, NPSCategory.DETRACTOR),
        (6, NPSCategory.DETRACTOR),
        (7, NPSCategory.PASSIVE),
        (8, NPSCategory.PASSIVE),
        (9, NPSCategory.PROMOTER),
        (10, NPSCategory.PROMOTER),
    ],
)
def test_categories(score: int, category: NPSCategory) -> None:
    assert categorise(score) is category


@pytest.mark.parametrize("score", [-1, 11])
def test_out_of_range(score: int) -> None:
    with pytest.raises(ValueError):
        categorise(score)


def test_value_is_exact_not_rounded() -> None:
    summary = summarise([10, 9, 7, 3, 10, 0])  # 3 promoters, 1 passive, 2 detractors
    assert (summary.promoters, summary.passives, summary.detractors, summary.responses) == (3, 1, 2, 6)
    assert summary.value == pytest.approx(100 / 6, abs=1e-12)
    assert summary.value != round(summary.value)


def test_margin_of_error_formula() -> None:
    summary = NPSSummary(promoters=15, passives=5, detractors=10)
    p, d, n = 0.5, 1 / 3, 30
    expected = 1.959963984540054 * 100 * math.sqrt((p + d - (p - d) ** 2) / n)
    assert summary.margin_of_error == pytest.approx(expected)
    assert 28 < summary.margin_of_error < 33  # about ±30 points at n = 30: why thin samples are flagged


def test_thin_flag_and_empty() -> None:
    assert NPSSummary(10, 9, 10).thin is True
    assert NPSSummary(10, 10, 10).thin is False
    empty = NPSSummary(0, 0, 0)
    assert empty.value is None and empty.margin_of_error is None and empty.thin


def test_unanimous_answers_have_zero_margin() -> None:
    assert NPSSummary(40, 0, 0).margin_of_error == 0.0
    assert NPSSummary(40, 0, 0).value == 100.0
