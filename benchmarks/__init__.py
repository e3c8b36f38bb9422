"""Benchmarks: `python -m benchmarks [suite ...]` runs benchmarks/bench_<suite>.py's main() (no suite: all)."""
