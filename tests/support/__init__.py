"""Helpers for tests and benchmarks that run against real PostgreSQL and Redis."""
