"""`python -m benchmarks [suite ...]`: run each named suite's `main()`, or every benchmarks/bench_*.py in order.

Each suite prints ours, the bare baseline and the ratio itself; this runner only finds, runs and times them, and
exits non-zero if a suite raised (the others still run).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from collections.abc import Sequence

import benchmarks


def available() -> list[str]:
    return sorted(
        m.name.removeprefix("bench_") for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )


def main(argv: Sequence[str] | None = None) -> int:
    suites = available()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="*", metavar="suite", help=f"one of: {', '.join(suites)} (default: all)")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(suites))
        return 0
    unknown = [s for s in args.suites if s not in suites]
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(unknown)}; available: {', '.join(suites)}")
    failed: list[str] = []
    for suite in args.suites or suites:
        started = time.monotonic()
        print(f"=== {suite} ===", flush=True)
        try:
            importlib.import_module(f"benchmarks.bench_{suite}").main()
        except Exception:
            traceback.print_exc()
            failed.append(suite)
        print(f"=== {suite}: {time.monotonic() - started:.1f} s ===", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
