"""Net Promoter Score arithmetic (pure; the SQL that feeds it lives in nps.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

THIN_SAMPLE = 30  # below this many responses the ±margin is wider than ~28 points: flag it, do not hide it
Z_95 = 1.959963984540054  # two-sided 95 % normal quantile


class NPSCategory(StrEnum):
    DETRACTOR = "detractor"  # 0-6
    PASSIVE = "passive"  # 7-8
    PROMOTER = "promoter"  # 9-10


def categorise(score: int) -> NPSCategory:
    if not 0 <= score <= 10:
        raise ValueError(f"NPS score must be 0-10, got {score}")
    if score >= 9:
        return NPSCategory.PROMOTER
    if score >= 7:
        return NPSCategory.PASSIVE
    return NPSCategory.DETRACTOR


@dataclass(frozen=True)
class NPSSummary:
    promoters: int
    passives: int
    detractors: int

    @property
    def responses(self) -> int:
        return self.promoters + self.passives + self.detractors

    @property
    def value(self) -> float | None:
        """100 * (promoters - detractors) / responses, unrounded; None when nobody answered."""
        n = self.responses
        return None if n == 0 else 100.0 * (self.promoters - self.detractors) / n

    @property
    def margin_of_error(self) -> float | None:
        """95 % margin in NPS points: 1.96 * 100 * sqrt((p + d - (p - d)^2) / n).

        Each answer is a draw of +1 (promoter), 0 (passive) or -1 (detractor); its variance is
        p + d - (p - d)^2, and the NPS is 100 * the mean of those draws.
        """
        n = self.responses
        if n == 0:
            return None
        p = self.promoters / n
        d = self.detractors / n
        variance = max(p + d - (p - d) ** 2, 0.0)
        return Z_95 * 100.0 * math.sqrt(variance / n)

    @property
    def thin(self) -> bool:
        return self.responses < THIN_SAMPLE


def summarise(scores: list[int]) -> NPSSummary:
    categories = [categorise(s) for s in scores]
    return NPSSummary(
        promoters=categories.count(NPSCategory.PROMOTER),
        passives=categories.count(NPSCategory.PASSIVE),
        detractors=categories.count(NPSCategory.DETRACTOR),
    )
