"""The activity contract shared by `POST /v1/activities` and `sales.ingest_activities`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from models.sales import ActivityType, CompanySize, DealStage, TitleSeniority

# Batches are one INSERT; a bound keeps a single request's transaction and body small.
MAX_BATCH = 1000
# Clocks drift: a sender slightly ahead of us is fine, an activity days in the future is a bug upstream.
MAX_CLOCK_SKEW = timedelta(minutes=5)

DEAL_TYPES = frozenset({ActivityType.DEAL_STAGE_CHANGED, ActivityType.DEAL_WON, ActivityType.DEAL_LOST})
EMAIL_TYPES = frozenset({ActivityType.EMAIL_SENT, ActivityType.EMAIL_OPENED, ActivityType.EMAIL_REPLIED})

Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1)]

# Upper bound of each head-count bucket, in order.
_SIZE_BOUNDS: tuple[tuple[int, CompanySize], ...] = (
    (10, CompanySize.MICRO),
    (50, CompanySize.SMALL),
    (200, CompanySize.MEDIUM),
    (1000, CompanySize.MID_MARKET),
    (5000, CompanySize.LARGE),
)


def company_size_bucket(headcount: int) -> CompanySize:
    """The bucket of a head count (the main app may send either the count or the bucket label)."""
    for upper, bucket in _SIZE_BOUNDS:
        if headcount <= upper:
            return bucket
    return CompanySize.ENTERPRISE


class LeadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Identifier
    industry: Annotated[Label, StringConstraints(max_length=64)] | None = None
    company_size: CompanySize | None = None
    title_seniority: TitleSeniority | None = None
    region: Annotated[Label, StringConstraints(max_length=32)] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        # Lead ids are opaque; integers from the main app are accepted and stored as text.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("company_size", mode="before")
    @classmethod
    def _bucket_headcount(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError("company_size head count must be at least 1")
            return company_size_bucket(value)
        return value


class ActivityIn(BaseModel):
    """One rep activity. The workspace comes from the caller (API key or task argument), never from the item."""

    model_config = ConfigDict(extra="forbid")

    activity_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
    type: ActivityType
    occurred_at: AwareDatetime
    rep_id: int = Field(gt=0)
    lead: LeadIn
    template_id: Identifier | None = None
    stage: DealStage | None = None
    amount_cents: int | None = Field(default=None, ge=0, le=10**15)

    @field_validator("occurred_at")
    @classmethod
    def _not_in_future(cls, value: datetime) -> datetime:
        if value > datetime.now(UTC) + MAX_CLOCK_SKEW:
            raise ValueError("occurred_at is in the future")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _fields_fit_type(self) -> ActivityIn:
        if self.type is ActivityType.EMAIL_SENT and self.template_id is None:
            raise ValueError("template_id is required for email_sent")
        if self.template_id is not None and self.type not in EMAIL_TYPES:
            raise ValueError(f"template_id is only allowed on email activities, not {self.type.value}")
        if self.type is ActivityType.DEAL_STAGE_CHANGED:
            if self.stage is None or self.amount_cents is None:
                raise ValueError("deal_stage_changed needs stage and amount_cents")
        elif self.stage is not None:
            raise ValueError(f"stage is only allowed on deal_stage_changed, not {self.type.value}")
        if self.amount_cents is not None and self.type not in DEAL_TYPES:
            raise ValueError(f"amount_cents is only allowed on deal activities, not {self.type.value}")
        return self
