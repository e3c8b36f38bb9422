"""The periodic jobs: what runs, when, and why that cadence.

Every entry is a crontab (an interval schedule restarts its countdown whenever beat restarts) with an
`options.expires`, so an entry that sat in a backed-up queue past its next run is dropped rather than run twice
in a row. Only one beat may run; the jobs themselves are idempotent so a second beat changes nothing.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab


def _entry(task: str, schedule: crontab, expires: int, **kwargs: Any) -> dict[str, Any]:
    return {"task": task, "schedule": schedule, "kwargs": kwargs, "options": {"expires": expires}}


SYSTEM: dict[str, dict[str, Any]] = {
    # The outbox sweeper: a lost publish or an emptied Redis delays a job by at most a minute plus the grace.
    "system.redeliver_stale": _entry("system.redeliver_stale", crontab(minute="*"), expires=55),
    # Nightly, off-peak: the ledger keeps finished jobs (and their idempotency keys) LEDGER_RETENTION_DAYS days.
    "system.prune_ledger": _entry("system.prune_ledger", crontab(hour="1", minute="10"), expires=6 * 3600),
}

BILLING: dict[str, dict[str, Any]] = {
    # Every minute: keeps the not-yet-aggregated tail (read by the usage API and quotas) about a minute long.
    # Each run that aggregated events chains billing.check_quotas as a child job.
    "billing.aggregate_usage": _entry("billing.aggregate_usage", crontab(minute="*"), expires=55),
    # A sweep besides the chain: limits change with plan changes even when no new usage arrives.
    "billing.check_quotas": _entry("billing.check_quotas", crontab(minute="*/10"), expires=540),
    # Hourly: an ended period is invoiced within the hour; unique (subscription, period_start) makes overlaps harmless.
    "billing.generate_invoices": _entry("billing.generate_invoices", crontab(minute=5), expires=3300),
    # Every 5 minutes: a draft is numbered and opened at most 5 minutes after its grace period ends.
    "billing.finalize_invoices": _entry("billing.finalize_invoices", crontab(minute="*/5"), expires=290),
    # Hourly: a trial converts (or falls back to Free) within the hour after it ends.
    "billing.process_trials": _entry("billing.process_trials", crontab(minute=15), expires=3300),
}

GROWTH: dict[str, dict[str, Any]] = {
    # Milestones proven by usage: reads only events past its (txid, id) cursor, so frequent runs stay cheap.
    "growth.sync_usage_milestones": _entry("growth.sync_usage_milestones", crontab(minute="*/3"), expires=170),
    # Nightly churn scoring of every workspace (retrains on labelled history), after the day's usage has landed.
    "growth.score_churn_risk": _entry("growth.score_churn_risk", crontab(hour="2", minute="30"), expires=6 * 3600),
    # Hourly, a quarter past: after billing's quota checks have refreshed usage_metrics on the hour.
    "growth.detect_expansion": _entry("growth.detect_expansion", crontab(minute="15"), expires=3300),
    # Daily rolling NPS, then the users due a survey (activation and the last answer decide who).
    "growth.snapshot_nps": _entry("growth.snapshot_nps", crontab(hour="3", minute="30"), expires=6 * 3600),
    "growth.schedule_nps_surveys": _entry(
        "growth.schedule_nps_surveys", crontab(hour="4", minute="0"), expires=6 * 3600
    ),
    # Invitations live 7 days; hourly expiry keeps the listed status at most an hour behind the clock.
    "growth.expire_invitations": _entry("growth.expire_invitations", crontab(minute="5"), expires=3300),
    # Release notes go out within five minutes of their publish_at.
    "growth.publish_releases": _entry("growth.publish_releases", crontab(minute="*/5"), expires=280),
}

SALES: dict[str, dict[str, Any]] = {
    # The spec caches salesboard metrics for 5 minutes: one sync per active workspace per 5-minute slot
    # (the fan-out's idempotency key is the slot, so a second beat in the same slot enqueues nothing). The syncs
    # are forced: at the cache's own cadence, queue jitter would otherwise make every other one a cache hit.
    "sales.schedule_salesboard_syncs": _entry("sales.schedule_salesboard_syncs", crontab(minute="*/5"), expires=280),
    # Nightly adaptive learning, after the day's email outcomes have arrived and clear of the 02:30 churn scoring.
    "sales.schedule_adaptive_learning": _entry(
        "sales.schedule_adaptive_learning", crontab(hour="3", minute="45"), expires=6 * 3600
    ),
}

AI: dict[str, dict[str, Any]] = {}

WORKFLOWS: dict[str, dict[str, Any]] = {}

OPERATIONS: dict[str, dict[str, Any]] = {
    # Runs the ledger calls running that no worker holds (killed host, lost database connection): handed back
    # within a minute instead of waiting for the sweeper's running cut-off (the longest hard time limit).
    "operations.recover_orphans": _entry("operations.recover_orphans", crontab(minute="*"), expires=55),
}

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {**SYSTEM, **BILLING, **GROWTH, **SALES, **AI, **WORKFLOWS, **OPERATIONS}
