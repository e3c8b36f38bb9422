"""The fault suite's summary: one line per fault (injected, expected, completed, duplicates, lost) at the end."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.faults.drills import FaultOutcome

_OUTCOMES: list[FaultOutcome] = []


@pytest.fixture
def report_fault() -> Callable[[FaultOutcome], None]:
    def report(outcome: FaultOutcome) -> None:
        _OUTCOMES.append(outcome)

    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _OUTCOMES:
        return
    terminalreporter.section("fault drills")
    for item in _OUTCOMES:
        terminalreporter.write_line(item.line())
