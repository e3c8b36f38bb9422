"""Celery app, job base, database plumbing, the operator CLI and the dev launcher."""
