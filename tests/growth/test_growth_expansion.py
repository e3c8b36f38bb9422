"""Expansion detection: each signal, one unresolved opportunity per (subscription, type), statuses, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.core import Subscription, UsageMetrics
from models.growth import (
    ChurnModelKind,
    ExpansionMetrics,
    FeatureGateEvent,
    OpportunityStatus,
    OpportunityType,
    RetentionMetrics,
    RiskLevel,
)
from tasks.growth import expansion
from tests.growth import support

NOW = datetime(2032, 7, 20, 12, 15, tzinfo=UTC)
PERIOD_START = NOW - timedelta(days=10)


def _usage(session: Session, ws: int, sub: int, metric: str, quantity: int) -> None:
    session.execute(
        insert(UsageMetrics).values(
            workspace_id=ws,
            subscription_id=sub,
            metric=metric,
            period_start=PERIOD_START,
            period_end=PERIOD_START + timedelta(days=30),
            quantity=quantity,
        )
    )
    session.commit()


def _opportunities(session: Session, sub: int) -> dict[OpportunityType, ExpansionMetrics]:
    session.expire_all()
    rows = session.execute(select(ExpansionMetrics).where(ExpansionMetrics.subscription_id == sub)).scalars().all()
    return {r.opportunity_type: r for r in rows if r.status in (OpportunityStatus.OPEN, OpportunityStatus.PRESENTED)}


def _detect(session: Session, at: datetime = NOW) -> dict[str, int]:
    with freeze_time(at):
        result = expansion.detect_expansion(session, at)
        session.commit()
    return result


def test_each_signal_and_its_suggestion(session: Session) -> None:
    # Starter: 5,000 emails, 1,000 leads, 3 seats, no AI Salesboard.
    ws, sub = support.workspace(session, NOW - timedelta(days=100), plan="starter", period_start=PERIOD_START)
    _usage(session, ws, sub, "emails_sent", 4_300)  # 86 % of the limit
    _usage(session, ws, sub, "leads_created", 500)  # 50 % after 10 of 30 days: on pace for 1,500
    for _ in range(3):
        support.member(session, ws, NOW - timedelta(days=50))
    session.execute(
        insert(FeatureGateEvent),
        [{"workspace_id": ws, "feature": "ai_salesboard", "occurred_at": NOW - timedelta(days=d)} for d in (1, 2)],
    )
    session.commit()
    _detect(session)
    found = _opportunities(session, sub)
    assert set(found) == {
        OpportunityType.QUOTA_THRESHOLD,
        OpportunityType.QUOTA_PROJECTION,
        OpportunityType.SEAT_CAP,
        OpportunityType.FEATURE_GATE,
    }
    threshold = found[OpportunityType.QUOTA_THRESHOLD]
    assert threshold.details["metric"] == "emails_sent" and threshold.score == 86.0
    assert threshold.suggested_plan_code == "professional" and threshold.expected_mrr_delta_cents == 29_900 - 4_900
    projection = found[OpportunityType.QUOTA_PROJECTION]
    assert projection.details["metric"] == "leads_created" and projection.details["projected"] == 1500.0
    assert projection.score == 75.0
    assert found[OpportunityType.SEAT_CAP].details == {"seats_used": 3, "seat_cap": 3}
    gate = found[OpportunityType.FEATURE_GATE]
    assert gate.details["feature"] == "ai_salesboard" and gate.details["attempts"] == 2
    assert gate.suggested_plan_code == "professional"


def test_engaged_workspace_on_a_low_tier(session: Session) -> None:
    ws, sub = support.workspace(session, NOW - timedelta(days=100), plan="free", period_start=PERIOD_START)
    session.execute(
        insert(RetentionMetrics).values(
            workspace_id=ws,
            subscription_id=sub,
            as_of=NOW.date(),
            scored_at=NOW,
            days_since_last_key_action=0,
            active_days_30d=25,
            stickiness=25 / 30,
            daily_active_members=1,
            monthly_active_members=1,
            usage_last_14d=10,
            usage_prev_14d=10,
            usage_trend=0,
            milestone_share=0.8,
            quota_utilisation=0.5,
            seats_used=1,
            nps_responses=0,
            tenure_days=100,
            plan_code="free",
            plan_tier=0,
            churn_risk_score=20,
            risk_level=RiskLevel.LOW,
            top_factors=[],
            model=ChurnModelKind.RULE,
        )
    )
    session.commit()
    _detect(session)
    engaged = _opportunities(session, sub)[OpportunityType.ENGAGED_LOW_TIER]
    assert engaged.suggested_plan_code == "starter" and engaged.expected_mrr_delta_cents == 4_900
    assert engaged.score == pytest.approx(100 * (25 / 30) * 0.8, abs=0.01)


def test_one_unresolved_per_type_statuses_and_expiry(session: Session) -> None:
    ws, sub = support.workspace(session, NOW - timedelta(days=100), plan="starter", period_start=PERIOD_START)
    _usage(session, ws, sub, "emails_sent", 4_500)
    first = _detect(session)
    assert first["opportunities_created"] >= 1
    opportunity = _opportunities(session, sub)[OpportunityType.QUOTA_THRESHOLD]
    _detect(session, NOW + timedelta(hours=1))
    again = _opportunities(session, sub)[OpportunityType.QUOTA_THRESHOLD]
    assert again.id == opportunity.id and again.last_seen_at == NOW + timedelta(hours=1)

    # The partial unique index itself refuses a second unresolved row for the same (subscription, type).
    with pytest.raises(IntegrityError):
        session.execute(
            insert(ExpansionMetrics).values(
                workspace_id=ws,
                subscription_id=sub,
                opportunity_type=OpportunityType.QUOTA_THRESHOLD,
                current_plan_code="starter",
                suggested_plan_code="professional",
                expected_mrr_delta_cents=1,
                score=1,
                details={},
                detected_at=NOW,
                last_seen_at=NOW,
            )
        )
    session.rollback()

    assert expansion.move_opportunity(session, opportunity.id, "present", NOW) == "presented"
    assert expansion.move_opportunity(session, opportunity.id, "present", NOW) is None
    session.commit()
    _detect(session, NOW + timedelta(hours=2))  # a presented one is refreshed, not duplicated
    assert _opportunities(session, sub)[OpportunityType.QUOTA_THRESHOLD].id == opportunity.id
    assert expansion.move_opportunity(session, opportunity.id, "convert", NOW) == "converted"
    session.commit()

    # Resolved on this plan: the same signal stays quiet for the cooldown, then may raise a new open one.
    _detect(session, NOW + timedelta(hours=3))
    assert OpportunityType.QUOTA_THRESHOLD not in _opportunities(session, sub)
    session.execute(
        ExpansionMetrics.__table__.update()
        .where(ExpansionMetrics.id == opportunity.id)
        .values(resolved_at=NOW + timedelta(hours=3) - timedelta(days=expansion.RESOLVED_COOLDOWN_DAYS))
    )
    session.commit()
    _detect(session, NOW + timedelta(hours=3))
    fresh = _opportunities(session, sub)[OpportunityType.QUOTA_THRESHOLD]
    assert fresh.id != opportunity.id and fresh.status == OpportunityStatus.OPEN
    # Left unseen for 7 days, an open one expires.
    session.execute(UsageMetrics.__table__.update().where(UsageMetrics.subscription_id == sub).values(quantity=100))
    session.commit()
    _detect(session, NOW + timedelta(days=7, hours=2))
    assert OpportunityType.QUOTA_THRESHOLD in _opportunities(session, sub)  # seen 6 days 23 hours ago: kept
    _detect(session, NOW + timedelta(days=7, hours=4))
    assert OpportunityType.QUOTA_THRESHOLD not in _opportunities(session, sub)
    session.expire_all()
    assert session.get(ExpansionMetrics, fresh.id).status == OpportunityStatus.EXPIRED


def test_dismissed_stays_quiet_on_its_plan_but_not_after_an_upgrade(session: Session) -> None:
    ws, sub = support.workspace(session, NOW - timedelta(days=100), plan="starter", period_start=PERIOD_START)
    _usage(session, ws, sub, "emails_sent", 4_500)
    _detect(session)
    dismissed = _opportunities(session, sub)[OpportunityType.QUOTA_THRESHOLD]
    assert expansion.move_opportunity(session, dismissed.id, "dismiss", NOW) == "dismissed"
    session.commit()
    for hours in (1, 24 * 19):  # the period runs until NOW + 20 days
        _detect(session, NOW + timedelta(hours=hours))
        assert OpportunityType.QUOTA_THRESHOLD not in _opportunities(session, sub)

    # Upgraded, and already at 90 % of the bigger plan: that is a new conversation, cooldown or not.
    session.execute(Subscription.__table__.update().where(Subscription.id == sub).values(plan_code="professional"))
    session.execute(UsageMetrics.__table__.update().where(UsageMetrics.subscription_id == sub).values(quantity=45_000))
    session.commit()
    _detect(session, NOW + timedelta(hours=2))
    again = _opportunities(session, sub)[OpportunityType.QUOTA_THRESHOLD]
    assert again.id != dismissed.id and again.current_plan_code == "professional"
    assert again.suggested_plan_code == "enterprise"
