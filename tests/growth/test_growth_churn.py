"""Churn scoring against the real database: the known-answer population, determinism, learned model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from freezegun import freeze_time
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from models.growth import ChurnModelKind, RetentionMetrics, RiskLevel
from tasks.growth import churn
from tests.growth import support

NOW = datetime(2030, 3, 15, 2, 30, tzinfo=UTC)  # five days after the US switched to summer time


def _days(n: float) -> timedelta:
    return timedelta(days=n)


def _population(session: Session) -> tuple[int, int]:
    # At risk: nobody has done anything on purpose for 40 days (last login, last lead), the sequences still
    # send but 80 % less (last 14 days against the 14 before), and the one answer is a detractor's.
    risky, risky_sub = support.workspace(session, NOW - _days(200), plan="starter", period_start=NOW - _days(10))
    owner = support.member(session, risky, NOW - _days(200), last_active_at=NOW - _days(40))
    support.usage(session, risky, risky_sub, [NOW - _days(40)], metric="leads_created")
    support.usage(session, risky, risky_sub, [NOW - _days(15 + i * 0.5) for i in range(10)])
    support.usage(session, risky, risky_sub, [NOW - _days(3), NOW - _days(9)])
    support.nps_answer(session, risky, owner, 2, NOW - _days(20))

    healthy, healthy_sub = support.workspace(
        session, NOW - _days(100), plan="professional", period_start=NOW - _days(10)
    )
    users = [support.member(session, healthy, NOW - _days(100), last_active_at=NOW - _days(0.2)) for _ in range(6)]
    # A key action every day and growing: twice the usage in the last 14 days as in the 14 before.
    support.usage(
        session, healthy, healthy_sub, [NOW - _days(d + 0.5) for d in range(14) for _ in range(2)], "leads_created"
    )
    support.usage(session, healthy, healthy_sub, [NOW - _days(d + 0.5) for d in range(14, 28)], "leads_created")
    support.nps_answer(session, healthy, users[0], 10, NOW - _days(5))
    return risky, healthy


def _row(session: Session, workspace_id: int) -> RetentionMetrics:
    session.expire_all()
    return session.execute(
        select(RetentionMetrics).where(
            RetentionMetrics.workspace_id == workspace_id, RetentionMetrics.as_of == NOW.date()
        )
    ).scalar_one()


def test_known_answers_high_and_low(session: Session) -> None:
    risky, healthy = _population(session)
    with freeze_time(NOW):
        for workspace_id in (risky, healthy):
            churn.score_churn_risk(session, NOW, workspace_id=workspace_id, retrain=True)
        session.commit()

    high = _row(session, risky)
    assert high.risk_level == RiskLevel.HIGH and high.churn_risk_score >= 70
    assert high.days_since_last_key_action == 40.0
    assert (high.usage_prev_14d, high.usage_last_14d, high.usage_trend) == (100, 20, -0.8)
    assert high.active_days_30d == 0 and high.stickiness == 0.0
    assert high.nps == -100.0 and high.nps_responses == 1
    assert high.model == ChurnModelKind.RULE
    factors = high.top_factors
    assert factors[0] == {"feature": "days_since_last_key_action", "weight": 12.5, "unit": "points", "value": 40.0}
    assert [f["feature"] for f in factors[1:]] == ["usage_trend", "stickiness"]
    assert all(f["weight"] > 0 for f in factors)

    low = _row(session, healthy)
    assert low.risk_level == RiskLevel.LOW and low.churn_risk_score < 40
    assert (low.usage_prev_14d, low.usage_last_14d, low.usage_trend) == (140, 280, 0.5)
    assert low.seats_used == 6 and low.daily_active_members == 6 and low.monthly_active_members == 6
    assert low.active_days_30d == 28 and low.nps == 100.0
    assert all(f["weight"] < 0 for f in low.top_factors)


def test_scoring_is_deterministic_and_idempotent(session: Session) -> None:
    risky, healthy = _population(session)
    with freeze_time(NOW):
        churn.score_churn_risk(session, NOW, workspace_id=risky, retrain=True)
        session.commit()
        first = _row(session, risky)
        first_values = (first.churn_risk_score, first.top_factors, first.id)
        churn.score_churn_risk(session, NOW, workspace_id=risky, retrain=True)
        session.commit()
    again = _row(session, risky)
    assert (again.churn_risk_score, again.top_factors, again.id) == first_values
    count = session.execute(
        select(text("count(*)")).select_from(RetentionMetrics).where(RetentionMetrics.workspace_id == risky)
    ).scalar_one()
    assert count == 1
    # On demand for one workspace writes only that workspace.
    assert session.execute(select(RetentionMetrics.id).where(RetentionMetrics.workspace_id == healthy)).first() is None


LEARN_NOW = datetime(2035, 6, 1, 2, 30, tzinfo=UTC)


def test_learned_model_replaces_rule_with_enough_labels(session: Session) -> None:
    """History where churn follows idleness only: the learned model beats the rule and is then used."""
    rng = np.random.default_rng(5)
    snapshot_days = [LEARN_NOW.date() - timedelta(days=d) for d in (72, 65, 58, 51, 44, 37)]
    rows: list[dict[str, Any]] = []
    for i in range(240):
        idle = float(rng.uniform(0, 60))
        churned = bool(rng.uniform() < 1 / (1 + np.exp(-(-3 + 0.12 * idle))))
        snap = snapshot_days[i % len(snapshot_days)]
        ended = datetime.combine(snap, datetime.min.time(), UTC) + timedelta(days=10)
        ws, sub = support.workspace(
            session,
            LEARN_NOW - _days(400),
            status="cancelled" if churned else "active",
            ended_at=ended if churned else None,
        )
        rows.append(
            {
                "workspace_id": ws,
                "subscription_id": sub,
                "as_of": snap,
                "scored_at": LEARN_NOW,
                "days_since_last_key_action": idle,
                "active_days_30d": 10,
                "stickiness": float(rng.uniform(0, 0.5)),
                "daily_active_members": 1,
                "monthly_active_members": 1,
                "usage_last_14d": 1,
                "usage_prev_14d": 1,
                "usage_trend": float(rng.uniform(-1, 1)),
                "milestone_share": float(rng.uniform(0, 1)),
                "quota_utilisation": float(rng.uniform(0, 1)),
                "seats_used": int(rng.integers(1, 8)),
                "nps": None,
                "nps_responses": 0,
                "tenure_days": 300.0,
                "plan_tier": 1,
                "churn_risk_score": 50.0,
                "risk_level": RiskLevel.MEDIUM,
                "top_factors": [],
                "model": ChurnModelKind.RULE,
            }
        )
    session.execute(RetentionMetrics.__table__.insert(), rows)
    session.commit()
    with freeze_time(LEARN_NOW):
        decision = churn.train(session, LEARN_NOW)
        session.commit()
    assert decision.kind == ChurnModelKind.LOGISTIC, decision.reason
    assert decision.holdout_auc is not None and decision.rule_holdout_auc is not None
    assert decision.holdout_auc >= decision.rule_holdout_auc
    assert decision.positives + decision.negatives == 240
    assert decision.parameters is not None
    assert decision.parameters["coefficients"]["days_since_last_key_action"] > 0

    live, _ = support.workspace(session, LEARN_NOW - _days(50), period_start=LEARN_NOW - _days(3))
    support.member(session, live, LEARN_NOW - _days(50), last_active_at=LEARN_NOW - _days(1))
    with freeze_time(LEARN_NOW):
        result = churn.score_churn_risk(session, LEARN_NOW, workspace_id=live, retrain=False)
        session.commit()
    assert result["model"] == "logistic" and result["churn_model_id"] == decision.id
    scored = session.execute(
        select(RetentionMetrics).where(
            RetentionMetrics.workspace_id == live, RetentionMetrics.as_of == LEARN_NOW.date()
        )
    ).scalar_one()
    assert scored.model == ChurnModelKind.LOGISTIC and scored.top_factors[0]["unit"] == "log_odds"


def test_windows_are_utc_days_whatever_the_session_time_zone(session: Session) -> None:
    """In a DST zone PostgreSQL's "14 days" back across the switch is 335 hours; ours are always 14 x 24 hours."""
    ws, sub = support.workspace(session, NOW - _days(100), period_start=NOW - _days(5))
    # 30 minutes inside the last 14 x 24 hours, but outside "14 calendar days" in America/New_York.
    support.usage(session, ws, sub, [NOW - _days(14) + timedelta(minutes=30)])
    session.execute(text("SET LOCAL TIME ZONE 'America/New_York'"))
    # The caller's clock in another zone: still the UTC day's row (02:30 UTC is the evening before in New York).
    local_now = NOW.astimezone(ZoneInfo("America/New_York"))
    with freeze_time(NOW):
        result = churn.score_churn_risk(session, local_now, workspace_id=ws, retrain=False)
        session.commit()
    assert result["as_of"] == NOW.isoformat()
    row = _row(session, ws)
    assert row.as_of == NOW.date()
    assert (row.usage_last_14d, row.usage_prev_14d) == (10, 0)
