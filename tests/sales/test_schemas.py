"""The activity contract: what an item must carry for its type, and the normalisation of lead attributes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from models.sales import ActivityType, CompanySize
from tasks.sales.schemas import ActivityIn, company_size_bucket

NOW = datetime.now(UTC)


def _item(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "activity_id": "a-1",
        "type": "call",
        "occurred_at": (NOW - timedelta(hours=1)).isoformat(),
        "rep_id": 7,
        "lead": {"id": "L-1"},
    }
    base.update(overrides)
    return base


def test_a_call_with_lead_attributes_is_normalised() -> None:
    parsed = ActivityIn.model_validate(
        _item(lead={"id": 42, "industry": "  FinTech ", "company_size": 120, "title_seniority": "vp", "region": "EMEA"})
    )
    assert parsed.type is ActivityType.CALL
    assert parsed.lead.id == "42"
    assert parsed.lead.industry == "fintech"
    assert parsed.lead.company_size is CompanySize.MEDIUM
    assert parsed.lead.region == "emea"
    assert parsed.occurred_at.tzinfo is not None


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"type": "email_sent"}, "template_id is required"),
        ({"type": "deal_stage_changed", "stage": "proposal"}, "needs stage and amount_cents"),
        ({"type": "call", "amount_cents": 100}, "amount_cents is only allowed"),
        ({"type": "call", "stage": "demo"}, "stage is only allowed"),
        ({"type": "meeting_held", "template_id": "t1"}, "template_id is only allowed"),
        ({"occurred_at": "2026-01-01T10:00:00"}, "timezone"),
        ({"occurred_at": (NOW + timedelta(days=2)).isoformat()}, "in the future"),
        ({"type": "fax_sent"}, "type"),
        ({"rep_id": 0}, "greater than 0"),
        ({"lead": {"id": "L", "company_size": "huge"}}, "company_size"),
        ({"surprise": True}, "Extra inputs"),
        ({"type": "deal_won", "amount_cents": -5}, "greater than or equal to 0"),
    ],
)
def test_items_that_do_not_fit_their_type_are_rejected(overrides: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ActivityIn.model_validate(_item(**overrides))
    assert complaint in str(caught.value)


def test_deal_and_email_items_carry_their_fields() -> None:
    stage = ActivityIn.model_validate(_item(type="deal_stage_changed", stage="proposal", amount_cents=250_000))
    assert stage.amount_cents == 250_000 and stage.stage is not None
    won = ActivityIn.model_validate(_item(type="deal_won"))
    assert won.amount_cents is None
    reply = ActivityIn.model_validate(_item(type="email_replied"))
    assert reply.template_id is None


@pytest.mark.parametrize(
    ("headcount", "bucket"),
    [
        (1, "1-10"),
        (10, "1-10"),
        (11, "11-50"),
        (200, "51-200"),
        (1000, "201-1000"),
        (5000, "1001-5000"),
        (9999, "5001+"),
    ],
)
def test_head_counts_fall_into_bands(headcount: int, bucket: str) -> None:
    assert company_size_bucket(headcount).value == bucket
