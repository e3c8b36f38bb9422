"""A small, safe JSON-logic style expression language for workflow conditions.

An expression is JSON: a literal (string, number, bool, null, list of expressions) or a one-key object
``{"operator": [arguments...]}``. Nothing is ever passed to ``eval``: every operator is a plain Python
function in ``_OPERATORS`` and anything else is rejected by ``validate_expression`` when the map is saved
or executed, so a bad condition never reaches a running workflow.

Differences from json-logic-js, chosen so that rules read the way RevOps users expect:
- ``==``/``!=`` compare without JavaScript coercion (``"1" == 1`` is false); ``1 == 1.0`` is true.
- Ordering comparisons between incomparable values (``"a" < 3``, ``null > 1``) are false, never an error.
- Truthiness is JSON-logic's: ``0``, ``""``, ``[]``, ``null`` and ``false`` are false.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

JSONValue = Any

# Bounds keep a hostile or runaway map from costing more than a trivial amount of CPU per condition.
MAX_DEPTH = 32
MAX_NODES = 1_000
_MISSING = object()


class InvalidExpression(ValueError):
    """The expression is not well formed; raised before anything runs."""


class EvaluationError(ValueError):
    """A well-formed expression failed on this data (for example a division by zero)."""


def truthy(value: JSONValue) -> bool:
    """JSON-logic truthiness: empty containers, zero, empty string, null and false are false."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int | float):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    if isinstance(value, str | list | tuple | dict):
        return len(value) > 0
    return True


def lookup(data: JSONValue, path: str | int | None, default: JSONValue = None) -> JSONValue:
    """Read a dotted path (``lead.company.size``, ``tags.0``) from nested dicts and lists."""
    if path is None or path == "":
        return data
    current: JSONValue = data
    for part in str(path).split("."):
        if isinstance(current, Mapping):
            if part not in current:
                return default
            current = current[part]
        elif isinstance(current, list | tuple):
            try:
                index = int(part)
            except ValueError:
                return default
            if not -len(current) <= index < len(current):
                return default
            current = current[index]
        else:
            return default
    return current


def _number(value: JSONValue) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EvaluationError(f"expected a number, got {type(value).__name__}")
    return value


def _equal(a: JSONValue, b: JSONValue) -> bool:
    # bool is an int subclass in Python; true must not equal 1 in a condition.
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _ordered(op: Callable[[Any, Any], bool], values: Sequence[JSONValue]) -> bool:
    for left, right in itertools.pairwise(values):
        comparable = (
            isinstance(left, int | float)
            and isinstance(right, int | float)
            and not isinstance(left, bool)
            and not isinstance(right, bool)
        ) or (isinstance(left, str) and isinstance(right, str))
        if not comparable or not op(left, right):
            return False
    return True


def _in(needle: JSONValue, haystack: JSONValue) -> bool:
    if isinstance(haystack, str):
        return isinstance(needle, str) and needle in haystack
    if isinstance(haystack, list | tuple):
        return any(_equal(needle, item) for item in haystack)
    return False


def _divide(a: JSONValue, b: JSONValue) -> float:
    divisor = _number(b)
    if divisor == 0:
        raise EvaluationError("division by zero")
    return _number(a) / divisor


def _modulo(a: JSONValue, b: JSONValue) -> float | int:
    divisor = _number(b)
    if divisor == 0:
        raise EvaluationError("modulo by zero")
    return _number(a) % divisor


# Operators whose arguments are evaluated lazily (short-circuit), handled in ``evaluate`` itself.
_LAZY = {"and", "or", "if", "var", "missing"}

# Eager operators: name -> (minimum arguments, maximum arguments or None, implementation).
_OPERATORS: dict[str, tuple[int, int | None, Callable[..., JSONValue]]] = {
    "==": (2, 2, _equal),
    "!=": (2, 2, lambda a, b: not _equal(a, b)),
    "<": (2, 3, lambda *v: _ordered(lambda x, y: x < y, v)),
    "<=": (2, 3, lambda *v: _ordered(lambda x, y: x <= y, v)),
    ">": (2, 2, lambda *v: _ordered(lambda x, y: x > y, v)),
    ">=": (2, 2, lambda *v: _ordered(lambda x, y: x >= y, v)),
    "!": (1, 1, lambda a: not truthy(a)),
    "!!": (1, 1, truthy),
    "in": (2, 2, _in),
    "+": (1, None, lambda *v: sum(_number(x) for x in v)),
    "-": (1, 2, lambda *v: -_number(v[0]) if len(v) == 1 else _number(v[0]) - _number(v[1])),
    "*": (1, None, lambda *v: math.prod(_number(x) for x in v)),
    "/": (2, 2, _divide),
    "%": (2, 2, _modulo),
    "min": (1, None, lambda *v: min(_number(x) for x in v)),
    "max": (1, None, lambda *v: max(_number(x) for x in v)),
}

_LAZY_ARITY: dict[str, tuple[int, int | None]] = {
    "and": (1, None),
    "or": (1, None),
    "if": (1, None),
    "var": (0, 2),
    "missing": (1, None),
}

OPERATORS: frozenset[str] = frozenset(_OPERATORS) | frozenset(_LAZY)


def _arguments(raw: JSONValue) -> list[JSONValue]:
    # JSON-logic allows a lone argument without the list: {"var": "a"} == {"var": ["a"]}.
    return list(raw) if isinstance(raw, list) else [raw]


def validate_expression(expression: JSONValue) -> None:
    """Raise ``InvalidExpression`` naming the first problem, or return when the expression is well formed."""
    count = 0

    def visit(node: JSONValue, depth: int, where: str) -> None:
        nonlocal count
        count += 1
        if count > MAX_NODES:
            raise InvalidExpression(f"expression has more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            raise InvalidExpression(f"expression nested deeper than {MAX_DEPTH} at {where}")
        if node is None or isinstance(node, bool | str):
            return
        if isinstance(node, int | float):
            if isinstance(node, float) and not math.isfinite(node):
                raise InvalidExpression(f"non-finite number at {where}")
            return
        if isinstance(node, list):
            for index, item in enumerate(node):
                visit(item, depth + 1, f"{where}[{index}]")
            return
        if not isinstance(node, dict):
            raise InvalidExpression(f"unsupported value of type {type(node).__name__} at {where}")
        if len(node) != 1:
            raise InvalidExpression(f"an operation must have exactly one operator key at {where}, got {len(node)}")
        ((operator, raw),) = node.items()
        if operator not in OPERATORS:
            raise InvalidExpression(f"unknown operator {operator!r} at {where}")
        arguments = _arguments(raw)
        low, high = _LAZY_ARITY[operator] if operator in _LAZY else _OPERATORS[operator][:2]
        if len(arguments) < low or (high is not None and len(arguments) > high):
            expected = f"{low}" if low == high else f"{low}..{high if high is not None else 'n'}"
            raise InvalidExpression(
                f"operator {operator!r} at {where} takes {expected} arguments, got {len(arguments)}"
            )
        if operator == "var" and arguments and not isinstance(arguments[0], str | int | dict):
            raise InvalidExpression(f"'var' path at {where} must be a string or an integer")
        for index, argument in enumerate(arguments):
            visit(argument, depth + 1, f"{where}.{operator}[{index}]")

    visit(expression, 0, "$")


def evaluate(expression: JSONValue, data: JSONValue) -> JSONValue:
    """Evaluate a validated expression against ``data`` (the workflow's trigger payload)."""
    if isinstance(expression, list):
        return [evaluate(item, data) for item in expression]
    if not isinstance(expression, dict):
        return expression
    ((operator, raw),) = expression.items()
    arguments = _arguments(raw)
    if operator == "var":
        if not arguments:
            return data
        path = evaluate(arguments[0], data)
        default = evaluate(arguments[1], data) if len(arguments) > 1 else None
        return lookup(data, path, default)
    if operator == "missing":
        paths = [evaluate(argument, data) for argument in arguments]
        if len(paths) == 1 and isinstance(paths[0], list):
            paths = paths[0]
        return [path for path in paths if lookup(data, path, _MISSING) in (_MISSING, None, "")]
    if operator == "and":
        value: JSONValue = None
        for argument in arguments:
            value = evaluate(argument, data)
            if not truthy(value):
                return value
        return value
    if operator == "or":
        value = None
        for argument in arguments:
            value = evaluate(argument, data)
            if truthy(value):
                return value
        return value
    if operator == "if":
        # {"if": [cond1, then1, cond2, then2, ..., else]}
        index = 0
        while index + 1 < len(arguments):
            if truthy(evaluate(arguments[index], data)):
                return evaluate(arguments[index + 1], data)
            index += 2
        return evaluate(arguments[index], data) if index < len(arguments) else None
    implementation = _OPERATORS[operator][2]
    return implementation(*(evaluate(argument, data) for argument in arguments))


def render_template(value: JSONValue, data: JSONValue) -> JSONValue:
    """Fill ``{{ path }}`` placeholders in strings of an action's parameters from the payload.

    A string that is exactly one placeholder keeps the value's JSON type (``"{{deal.amount_cents}}"`` -> 125000);
    a placeholder inside longer text is replaced by its string form. Missing paths render as empty text.
    Only dotted-path lookups are supported, so a template cannot run code.
    """
    if isinstance(value, dict):
        return {key: render_template(item, data) for key, item in value.items()}
    if isinstance(value, list):
        return [render_template(item, data) for item in value]
    if not isinstance(value, str) or "{{" not in value:
        return value
    stripped = value.strip()
    if stripped.startswith("{{") and stripped.endswith("}}") and stripped.count("{{") == 1:
        return lookup(data, stripped[2:-2].strip())
    parts: list[str] = []
    rest = value
    while "{{" in rest:
        before, _, after = rest.partition("{{")
        path, closed, remainder = after.partition("}}")
        if not closed:
            break
        parts.append(before)
        found = lookup(data, path.strip())
        parts.append("" if found is None else str(found))
        rest = remainder
    parts.append(rest)
    return "".join(parts)
