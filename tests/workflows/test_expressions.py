"""The condition language: JSON-logic operators, truthiness, safety bounds and template rendering."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.workflows.expressions import (
    MAX_DEPTH,
    EvaluationError,
    InvalidExpression,
    evaluate,
    lookup,
    render_template,
    validate_expression,
)

PAYLOAD: dict[str, Any] = {
    "lead": {"industry": "fintech", "employees": 240, "title": "VP Sales", "tags": ["hot", "inbound"]},
    "deal": {"amount_cents": 1_250_000, "stage": "proposal"},
    "opted_out": False,
    "score": 0,
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({"==": [{"var": "lead.industry"}, "fintech"]}, True),
        ({"!=": [{"var": "lead.industry"}, "fintech"]}, False),
        ({">=": [{"var": "lead.employees"}, 200]}, True),
        ({"<": [100, {"var": "lead.employees"}, 500]}, True),  # between, exclusive
        ({"<=": [250, {"var": "lead.employees"}, 500]}, False),
        ({"in": ["hot", {"var": "lead.tags"}]}, True),
        ({"in": ["Sales", {"var": "lead.title"}]}, True),
        ({"in": ["cold", {"var": "lead.tags"}]}, False),
        ({"and": [{"var": "lead.employees"}, {"!": {"var": "opted_out"}}]}, True),
        ({"or": [{"var": "score"}, {"var": "missing.path"}]}, None),
        ({"!!": [{"var": "lead.tags"}]}, True),
        ({"if": [{">": [{"var": "deal.amount_cents"}, 1_000_000]}, "large", "small"]}, "large"),
        ({"if": [False, "a", {"==": [1, 2]}, "b", "c"]}, "c"),
        ({"var": ["lead.region", "unknown"]}, "unknown"),
        ({"var": "lead.tags.1"}, "inbound"),
        ({"missing": ["lead.industry", "lead.region", "deal.stage"]}, ["lead.region"]),
        ({"+": [1, 2, 3]}, 6),
        ({"-": [10, 4]}, 6),
        ({"-": [4]}, -4),
        ({"*": [{"var": "deal.amount_cents"}, 2]}, 2_500_000),
        ({"/": [{"var": "deal.amount_cents"}, 100]}, 12_500.0),
        ({"%": [7, 3]}, 1),
        ({"max": [3, 9, 4]}, 9),
        ({"min": [3, 9, 4]}, 3),
    ],
)
def test_operators(expression: Any, expected: Any) -> None:
    validate_expression(expression)
    assert evaluate(expression, PAYLOAD) == expected


def test_equality_does_not_coerce_like_javascript() -> None:
    assert evaluate({"==": ["1", 1]}, {}) is False
    assert evaluate({"==": [1, 1.0]}, {}) is True
    # true is not 1 in a condition, although Python's bool is an int.
    assert evaluate({"==": [True, 1]}, {}) is False


def test_ordering_incomparable_values_is_false_not_an_error() -> None:
    assert evaluate({"<": ["a", 3]}, {}) is False
    assert evaluate({">": [{"var": "nope"}, 1]}, {}) is False
    assert evaluate({"<": [True, 2]}, {}) is False


def test_and_or_short_circuit_before_an_error() -> None:
    # The division by zero is never evaluated because "and" stops at the first falsy value.
    assert evaluate({"and": [False, {"/": [1, 0]}]}, {}) is False
    assert evaluate({"or": [True, {"/": [1, 0]}]}, {}) is True


@pytest.mark.parametrize(
    "expression",
    [{"/": [1, 0]}, {"%": [1, 0]}, {"+": [1, "2"]}, {"*": [True, 2]}],
)
def test_runtime_errors_are_evaluation_errors(expression: Any) -> None:
    validate_expression(expression)
    with pytest.raises(EvaluationError):
        evaluate(expression, {})


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ({"eval": ["__import__('os')"]}, "unknown operator 'eval'"),
        ({"==": [1, 2], "!=": [1, 2]}, "exactly one operator key"),
        ({"==": [1]}, "takes 2 arguments, got 1"),
        ({"!": [1, 2]}, "takes 1 arguments, got 2"),
        ({"var": [["a"]]}, "'var' path"),
        ({"and": [{"==": [1, {"nope": 1}]}]}, "unknown operator 'nope' at $.and[0].==[1]"),
        ({"<": [1, float("inf")]}, "non-finite number"),
    ],
)
def test_invalid_expressions_are_rejected_with_the_reason(expression: Any, reason: str) -> None:
    with pytest.raises(InvalidExpression, match=None) as caught:
        validate_expression(expression)
    assert reason in str(caught.value)


def test_depth_and_size_are_bounded() -> None:
    deep: Any = True
    for _ in range(MAX_DEPTH + 1):
        deep = {"!": [deep]}
    with pytest.raises(InvalidExpression, match="nested deeper"):
        validate_expression(deep)
    wide = {"and": [{"==": [index, index]} for index in range(400)]}
    with pytest.raises(InvalidExpression, match="more than"):
        validate_expression(wide)


def test_lookup_paths() -> None:
    assert lookup(PAYLOAD, "lead.tags.0") == "hot"
    assert lookup(PAYLOAD, "lead.tags.-1") == "inbound"
    assert lookup(PAYLOAD, "lead.tags.9", "none") == "none"
    assert lookup(PAYLOAD, "lead.industry.length") is None
    assert lookup(PAYLOAD, "") is PAYLOAD


def test_render_template_keeps_types_and_never_runs_code() -> None:
    params = {
        "to": "{{ lead.title }}",
        "amount": "{{deal.amount_cents}}",
        "subject": "Deal at {{deal.stage}} for {{lead.industry}} ({{lead.region}})",
        "nested": [{"tags": "{{lead.tags}}"}],
        "code": "{{ __import__('os').system('true') }}",
        "plain": 5,
    }
    assert render_template(params, PAYLOAD) == {
        "to": "VP Sales",
        "amount": 1_250_000,
        "subject": "Deal at proposal for fintech ()",
        "nested": [{"tags": ["hot", "inbound"]}],
        "code": None,
        "plain": 5,
    }
