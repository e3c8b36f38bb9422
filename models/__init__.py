"""SQLAlchemy 2 typed models for every entity; importing this package registers all tables on Base.metadata."""

import importlib
import pkgutil

from models.base import Base
from models.core import (
    ApiKey,
    Job,
    JobStatus,
    Metric,
    Plan,
    PlanTier,
    QuotaEvent,
    QuotaStatus,
    Role,
    Subscription,
    SubscriptionStatus,
    TeamMember,
    UsageEvent,
    UsageMetrics,
    Workspace,
)

__all__ = [
    "ApiKey",
    "Base",
    "Job",
    "JobStatus",
    "Metric",
    "Plan",
    "PlanTier",
    "QuotaEvent",
    "QuotaStatus",
    "Role",
    "Subscription",
    "SubscriptionStatus",
    "TeamMember",
    "UsageEvent",
    "UsageMetrics",
    "Workspace",
]

# Every area's models live in models/<area>.py; import them all so Base.metadata is the whole schema.
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in {"base", "core", "migrations"}:
        importlib.import_module(f"{__name__}.{_module.name}")
