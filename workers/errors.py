"""The two kinds of failure a job can have: bad input (never retried) and transient trouble (retried, bounded)."""

from __future__ import annotations


class BadInput(Exception):
    """The job's input cannot be processed: the job fails once with this reason, and nothing is changed."""


class Transient(Exception):
    """A temporary condition (a dependency down, a lock held): the job is retried with backoff."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class JobFailed(Exception):
    """Raised in place of an error whose message may quote data (a database error's DETAIL quotes the row):
    Celery logs the exception and sends it to Flower, so this one carries only the reason fit for both."""
