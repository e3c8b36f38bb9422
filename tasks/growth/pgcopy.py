"""PostgreSQL binary COPY of fixed-width columns straight from and into numpy arrays.

Why: the nightly churn run moves ~100,000 rows of ~30 numbers each way. Sending them as bound array parameters
makes psycopg print every number as text in Python (most of the old run's time); fetching them as rows builds
millions of Python objects. In the binary COPY format a row of fixed-width, non-null fields has a fixed layout, so
numpy reads or writes all rows at once as one structured array.

Only fixed-width types are supported, and no NULLs: callers stand in a sentinel (NaN, '-infinity') and map it
back to NULL in SQL. A NULL (or a wider field) in an incoming COPY is detected and refused, never misread.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection
from sqlalchemy.orm import Session

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER = SIGNATURE + struct.pack(">ii", 0, 0)  # no OIDs, no header extension
_TRAILER = struct.pack(">h", -1)

# PostgreSQL type -> the big-endian numpy type of its binary send format.
WIRE_TYPES: dict[str, str] = {
    "bool": "?",
    "int2": ">i2",
    "int4": ">i4",
    "int8": ">i8",
    "float4": ">f4",
    "float8": ">f8",
    "date": ">i4",  # days since 2000-01-01
    "timestamptz": ">i8",  # microseconds since 2000-01-01 00:00 UTC; ±infinity are the int64 extremes
}

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
TIMESTAMP_NEG_INFINITY = np.iinfo(np.int64).min  # PostgreSQL's '-infinity' in the binary format


def _row_dtype(types: Sequence[str], names: Sequence[str]) -> np.dtype[Any]:
    fields: list[tuple[str, str]] = [("_count", ">i2")]
    for name, pg_type in zip(names, types, strict=True):
        if pg_type not in WIRE_TYPES:
            raise ValueError(f"{name}: {pg_type} is not a fixed-width type this module copies")
        fields += [(f"_len_{name}", ">i4"), (name, WIRE_TYPES[pg_type])]
    return np.dtype(fields)


def encode(columns: Sequence[tuple[str, str, NDArray[Any]]]) -> bytes:
    """A complete binary COPY stream for `columns` = [(name, postgres type, values), ...], all the same length."""
    names = [name for name, _, _ in columns]
    dtype = _row_dtype([pg_type for _, pg_type, _ in columns], names)
    lengths = {len(values) for _, _, values in columns}
    if len(lengths) > 1:
        raise ValueError(f"columns differ in length: {sorted(lengths)}")
    rows = np.empty(lengths.pop() if lengths else 0, dtype=dtype)
    rows["_count"] = len(columns)
    for name, pg_type, values in columns:
        rows[f"_len_{name}"] = np.dtype(WIRE_TYPES[pg_type]).itemsize
        rows[name] = values
    return _HEADER + rows.tobytes() + _TRAILER


def decode(data: bytes, columns: Sequence[tuple[str, str]]) -> dict[str, NDArray[Any]]:
    """Column arrays (native byte order) from a binary COPY stream of non-null fixed-width `columns`."""
    if not data.startswith(SIGNATURE):
        raise ValueError("not a binary COPY stream")
    flags, extension = struct.unpack_from(">ii", data, len(SIGNATURE))
    if flags & (1 << 16):
        raise ValueError("COPY stream carries OIDs")
    start = len(SIGNATURE) + 8 + extension
    if data[-2:] != _TRAILER:
        raise ValueError("COPY stream is truncated")
    names = [name for name, _ in columns]
    dtype = _row_dtype([pg_type for _, pg_type in columns], names)
    body = memoryview(data)[start:-2]
    if len(body) % dtype.itemsize:
        raise ValueError("COPY rows are not the expected width (a NULL or a variable-width field?)")
    rows = np.frombuffer(body, dtype=dtype)
    if rows.size and not (rows["_count"] == len(columns)).all():
        raise ValueError("COPY rows carry an unexpected number of fields")
    out: dict[str, NDArray[Any]] = {}
    for name, pg_type in columns:
        width = np.dtype(WIRE_TYPES[pg_type]).itemsize
        if rows.size and not (rows[f"_len_{name}"] == width).all():
            raise ValueError(f"{name}: a NULL or a field of the wrong width")
        out[name] = rows[name].astype(np.dtype(WIRE_TYPES[pg_type]).newbyteorder("="))
    return out


def _driver_cursor(bind: Session | Connection) -> Any:
    # The psycopg connection under the session's (or connection's) own transaction: the COPY is part of that unit
    # of work.
    connection = bind.connection() if isinstance(bind, Session) else bind
    return connection.connection.driver_connection.cursor()  # type: ignore[union-attr]


def copy_in(bind: Session | Connection, table: str, columns: Sequence[tuple[str, str, NDArray[Any]]]) -> None:
    """COPY the column arrays into `table` (a name this module's callers control, never user input)."""
    column_list = ", ".join(name for name, _, _ in columns)
    payload = encode(columns)
    statement = f"COPY {table} ({column_list}) FROM STDIN (FORMAT binary)"
    with _driver_cursor(bind) as cursor, cursor.copy(statement) as copy:
        copy.write(payload)


def copy_out(
    bind: Session | Connection, query: str, params: Mapping[str, Any], columns: Sequence[tuple[str, str]]
) -> dict[str, NDArray[Any]]:
    """Run `query` (psycopg `%(name)s` placeholders, bound client-side as literals) and return its columns."""
    chunks: list[bytes] = []
    statement = f"COPY ({query}) TO STDOUT (FORMAT binary)"
    with _driver_cursor(bind) as cursor, cursor.copy(statement, params) as copy:
        for chunk in copy:
            chunks.append(bytes(chunk))
    return decode(b"".join(chunks), columns)
