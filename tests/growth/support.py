"""Builders for growth tests: workspaces with explicit times, members, usage, NPS answers."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import insert
from sqlalchemy.orm import Session

from models.core import Subscription, SubscriptionStatus, TeamMember, UsageEvent, Workspace
from models.growth import NPSResponse


def workspace(
    session: Session,
    created_at: datetime,
    plan: str = "starter",
    period_start: datetime | None = None,
    period_days: int = 30,
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
    ended_at: datetime | None = None,
) -> tuple[int, int]:
    """A workspace and its subscription, created at an explicit time (DB now() is not frozen); commits."""
    workspace_id = session.execute(
        insert(Workspace).values(name=f"g-{uuid.uuid4().hex[:12]}", created_at=created_at).returning(Workspace.id)
    ).scalar_one()
    start = period_start or created_at
    subscription_id = session.execute(
        insert(Subscription)
        .values(
            workspace_id=workspace_id,
            plan_code=plan,
            status=status,
            started_at=created_at,
            billing_anchor_day=min(start.day, 28),
            current_period_start=start,
            current_period_end=start + timedelta(days=period_days),
            ended_at=ended_at,
            created_at=created_at,
        )
        .returning(Subscription.id)
    ).scalar_one()
    session.commit()
    return workspace_id, subscription_id


def member(session: Session, workspace_id: int, created_at: datetime, last_active_at: datetime | None = None) -> int:
    member_id = session.execute(
        insert(TeamMember)
        .values(
            workspace_id=workspace_id,
            email=f"{uuid.uuid4().hex[:10]}@example.com",
            name="Member",
            created_at=created_at,
            last_active_at=last_active_at,
        )
        .returning(TeamMember.id)
    ).scalar_one()
    session.commit()
    return member_id


def usage(
    session: Session, workspace_id: int, subscription_id: int, occurred: list[datetime], metric: str = "emails_sent"
) -> None:
    session.execute(
        insert(UsageEvent),
        [
            {
                "event_id": uuid.uuid4().hex,
                "workspace_id": workspace_id,
                "subscription_id": subscription_id,
                "metric": metric,
                "quantity": 10,
                "occurred_at": at,
            }
            for at in occurred
        ],
    )
    session.commit()


def nps_answer(session: Session, workspace_id: int, user_id: int, score: int, at: datetime) -> None:
    session.execute(
        insert(NPSResponse).values(workspace_id=workspace_id, user_id=user_id, score=score, responded_at=at)
    )
    session.commit()
