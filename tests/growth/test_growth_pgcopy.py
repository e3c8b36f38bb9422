"""Binary COPY to and from numpy: exact round trips through PostgreSQL, and refusal of what it cannot read."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tasks.growth import pgcopy


def _micros(at: datetime) -> int:
    return (at - pgcopy.PG_EPOCH) // np.timedelta64(1, "us").item()


def test_round_trip_through_a_table_is_exact(session: Session) -> None:
    at = datetime(2031, 3, 9, 7, 1, 2, 345678, tzinfo=UTC)
    columns = [
        ("id", "int8", np.array([1, 2**40, -3], dtype=np.int64)),
        ("small", "int2", np.array([0, -1, 32767], dtype=np.int16)),
        ("count", "int4", np.array([7, 0, -(2**31)], dtype=np.int32)),
        ("ratio", "float8", np.array([0.1, float("nan"), -1e300])),
        ("flag", "bool", np.array([True, False, True])),
        ("at", "timestamptz", np.array([_micros(at), pgcopy.TIMESTAMP_NEG_INFINITY, 0], dtype=np.int64)),
    ]
    session.execute(
        text(
            "CREATE TEMPORARY TABLE pgcopy_probe (id int8, small int2, count int4, ratio float8, flag bool, "
            "at timestamptz) ON COMMIT DROP"
        )
    )
    pgcopy.copy_in(session, "pgcopy_probe", columns)
    # PostgreSQL itself reads the values the way they were meant.
    rows = session.execute(
        text("SELECT id, small, count, ratio::text, flag, nullif(at, '-infinity') FROM pgcopy_probe ORDER BY count")
    ).all()
    assert [tuple(r) for r in rows] == [
        (-3, 32767, -(2**31), "-1e+300", True, datetime(2000, 1, 1, tzinfo=UTC)),
        (2**40, -1, 0, "NaN", False, None),
        (1, 0, 7, "0.1", True, at),
    ]
    back = pgcopy.copy_out(
        session,
        "SELECT id, small, count, ratio, flag, at FROM pgcopy_probe WHERE id <> %(skip)s ORDER BY id",
        {"skip": 2**40},
        [(name, pg_type) for name, pg_type, _ in columns],
    )
    assert back["id"].tolist() == [-3, 1]
    assert back["small"].tolist() == [32767, 0] and back["count"].tolist() == [-(2**31), 7]
    assert back["ratio"].tolist() == [-1e300, 0.1] and back["flag"].tolist() == [True, True]
    assert back["at"].tolist() == [0, _micros(at)]
    session.rollback()


def test_dates_and_empty_results(session: Session) -> None:
    back = pgcopy.copy_out(
        session,
        "SELECT CAST(%(day)s AS date) + g FROM generate_series(0, %(n)s) g",
        {"day": date(2000, 1, 3), "n": 1},
        [("day", "date")],
    )
    assert back["day"].tolist() == [2, 3]  # days since 2000-01-01
    empty = pgcopy.copy_out(session, "SELECT 1::int4 WHERE false", {}, [("one", "int4")])
    assert empty["one"].shape == (0,)
    session.rollback()


def test_refuses_nulls_and_wrong_widths(session: Session) -> None:
    with pytest.raises(ValueError, match=r"width|NULL"):
        pgcopy.copy_out(session, "SELECT 1::int8, NULL::int8", {}, [("a", "int8"), ("b", "int8")])
    session.rollback()
    with pytest.raises(ValueError, match=r"width|NULL"):
        pgcopy.copy_out(session, "SELECT 1::int4, 2::int8", {}, [("a", "int8"), ("b", "int4")])
    session.rollback()
    with pytest.raises(ValueError, match="fixed-width"):
        pgcopy.encode([("name", "text", np.array(["x"]))])
    with pytest.raises(ValueError, match="length"):
        pgcopy.encode([("a", "int4", np.zeros(2)), ("b", "int4", np.zeros(3))])
