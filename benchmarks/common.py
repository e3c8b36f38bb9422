"""What every benchmark shares: an isolated database and Redis db, and one way to print ours against bare."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.env import isolate


@contextmanager
def bench_environment(suite: str) -> Iterator[Any]:
    """A fresh migrated database `artisan_bench_<suite>` (or BENCH_DATABASE) and a Redis db (BENCH_REDIS_DB)."""
    preferred = os.environ.get("BENCH_REDIS_DB")
    isolated = isolate(
        prefix="artisan_bench",
        redis_db=int(preferred) if preferred else None,
        database=os.environ.get("BENCH_DATABASE", f"artisan_bench_{suite}"),
    )
    from workers.db import reset_engine

    reset_engine()
    try:
        yield isolated
    finally:
        reset_engine()
        if os.environ.get("BENCH_KEEP_DATABASE") != "1":
            isolated.release()


def report(
    suite: str,
    setup: str,
    *,
    ours: tuple[str, float, str],
    bare: tuple[str, float, str],
    higher_is_better: bool = True,
) -> dict[str, Any]:
    """Print ours, the bare baseline and the ratio (ours / bare for rates, bare / ours for times)."""
    ours_label, ours_value, unit = ours
    bare_label, bare_value, bare_unit = bare
    ratio = ours_value / bare_value if higher_is_better else bare_value / ours_value
    print(f"[{suite}] {setup}")
    print(f"  ours : {ours_label}: {ours_value:,.1f} {unit}")
    print(f"  bare : {bare_label}: {bare_value:,.1f} {bare_unit}")
    print(f"  ratio: {ratio:.2f}x of bare ({'higher' if higher_is_better else 'lower'} is better for ours)")
    result = {"suite": suite, "setup": setup, "ours": ours_value, "bare": bare_value, "ratio": round(ratio, 3)}
    print("  json : " + json.dumps(result))
    return result
