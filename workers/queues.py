"""The queues, each with the kind of work that goes there (scaling a kind of work is a deployment change)."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    # Money path: usage aggregation, quotas, invoices, trials. Short, DB-bound, must never starve.
    BILLING = "billing"
    # Growth and sales analytics: scoring, snapshots, salesboard syncs. DB-bound, tolerant of delay.
    ANALYTICS = "analytics"
    # System jobs (ping, outbox sweeper) and workflow steps: short and latency-sensitive.
    DEFAULT = "default"
    # LLM and text work: waits on the network, served by a thread-pool worker.
    AI = "ai"


# Task-name prefix -> queue (DESIGN.md's table).
AREA_QUEUES: dict[str, Queue] = {
    "system": Queue.DEFAULT,
    "billing": Queue.BILLING,
    "growth": Queue.ANALYTICS,
    "sales": Queue.ANALYTICS,
    "ai": Queue.AI,
    "workflows": Queue.DEFAULT,
    "operations": Queue.DEFAULT,
}

# Soft and hard time limits per queue, in seconds (soft raises inside the task, hard kills the process).
QUEUE_TIME_LIMITS: dict[Queue, tuple[int, int]] = {
    Queue.BILLING: (600, 720),
    Queue.ANALYTICS: (1500, 1800),
    Queue.DEFAULT: (300, 360),
    Queue.AI: (600, 720),
}


def queue_for(task_name: str) -> Queue:
    area = task_name.split(".", 1)[0]
    return AREA_QUEUES.get(area, Queue.DEFAULT)
