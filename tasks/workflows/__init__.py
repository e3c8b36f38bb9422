"""Durable workflow maps: validate a map, run each node as a ledger job, keep the execution history."""
