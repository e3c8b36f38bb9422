"""Activity ingest: the plain function and POST /v1/activities (idempotency, per-index errors, tenancy)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from api.keys import generate_key
from models.core import ApiKey
from models.sales import ActivityType, CompanySize, SalesActivity, TitleSeniority
from tasks.sales.ingest import InvalidActivities, ingest_activities
from tasks.sales.schemas import ActivityIn
from tests.sales.factory import item, make_reps
from workers.db import session_scope

AT = datetime.now(UTC) - timedelta(hours=2)


def _stored(workspace_id: int) -> list[SalesActivity]:
    with session_scope() as s:
        rows = list(
            s.scalars(
                select(SalesActivity).where(SalesActivity.workspace_id == workspace_id).order_by(SalesActivity.id)
            )
        )
        s.expunge_all()
    return rows


def test_a_batch_is_stored_once_and_a_repeat_is_counted_as_duplicates(make_workspace) -> None:
    workspace_id = make_workspace()
    (rep,) = make_reps(workspace_id, 1)
    batch = [
        ActivityIn.model_validate(b)
        for b in (
            item("email_sent", rep, AT, "L1", template="t9", industry="SaaS", company_size=40, title_seniority="vp"),
            item("deal_stage_changed", rep, AT, "L1", stage="proposal", amount_cents=120_000),
            item("call", rep, AT, "L2", activity_id="same"),
            item("call", rep, AT, "L2", activity_id="same"),
        )
    ]
    with session_scope() as s:
        first = ingest_activities(s, workspace_id, batch)
    assert (first.received, first.inserted, first.duplicates) == (4, 3, 1)
    with session_scope() as s:
        again = ingest_activities(s, workspace_id, batch)
    assert (again.inserted, again.duplicates) == (0, 4)
    rows = _stored(workspace_id)
    assert len(rows) == 3
    sent = rows[0]
    assert (sent.activity_type, sent.template_id, sent.lead_industry) == (ActivityType.EMAIL_SENT, "t9", "saas")
    assert (sent.lead_company_size, sent.lead_title_seniority) == (CompanySize.SMALL, TitleSeniority.VP)
    assert rows[1].amount_cents == 120_000 and rows[1].deal_stage is not None


def test_a_rep_of_another_workspace_rejects_the_whole_batch_by_index(make_workspace) -> None:
    workspace_id, other = make_workspace(), make_workspace()
    (rep,), (foreign,) = make_reps(workspace_id, 1), make_reps(other, 1)
    batch = [ActivityIn.model_validate(item("call", r, AT)) for r in (rep, foreign, rep, 10**12)]
    with session_scope() as s, pytest.raises(InvalidActivities) as caught:
        ingest_activities(s, workspace_id, batch)
    assert [(i.index, i.field) for i in caught.value.items] == [(1, "rep_id"), (3, "rep_id")]
    assert "activities[1].rep_id" in str(caught.value)
    assert _stored(workspace_id) == []


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    from api.main import app

    with TestClient(app) as test_client:
        yield test_client


def _key_for(workspace_id: int) -> dict[str, str]:
    key = generate_key()
    with session_scope() as s:
        s.execute(insert(ApiKey).values(workspace_id=workspace_id, prefix=key.prefix, secret_hash=key.secret_hash))
    return {"Authorization": f"Bearer {key.plaintext}"}


def test_post_activities_ingests_for_the_callers_workspace_idempotently(client: TestClient, make_workspace) -> None:
    workspace_id, other = make_workspace(), make_workspace()
    (rep,) = make_reps(workspace_id, 1)
    headers = _key_for(workspace_id)
    body = {"activities": [item("call", rep, AT, activity_id="c-1"), item("meeting_held", rep, AT)]}
    response = client.post("/v1/activities", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 2, "inserted": 2, "duplicates": 0}
    assert client.post("/v1/activities", json=body, headers=headers).json() == {
        "received": 2,
        "inserted": 0,
        "duplicates": 2,
    }
    # The same activity_id in another workspace is another activity (ids are the sender's, per workspace).
    (other_rep,) = make_reps(other, 1)
    response = client.post(
        "/v1/activities", json={"activities": [item("call", other_rep, AT, activity_id="c-1")]}, headers=_key_for(other)
    )
    assert response.json()["inserted"] == 1
    assert len(_stored(workspace_id)) == 2 and len(_stored(other)) == 1


def test_post_activities_names_every_bad_item_by_index_and_stores_nothing(client: TestClient, make_workspace) -> None:
    workspace_id, other = make_workspace(), make_workspace()
    (rep,), (foreign,) = make_reps(workspace_id, 1), make_reps(other, 1)
    headers = _key_for(workspace_id)
    bad_shape = {"activities": [item("call", rep, AT), {**item("email_sent", rep, AT), "template_id": None}]}
    response = client.post("/v1/activities", json=bad_shape, headers=headers)
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["fields"]] == ["activities.1"]
    assert "template_id is required" in response.json()["fields"][0]["message"]

    foreign_rep = {"activities": [item("call", rep, AT), item("call", rep, AT), item("call", foreign, AT)]}
    response = client.post("/v1/activities", json=foreign_rep, headers=headers)
    assert response.status_code == 422
    assert response.json()["fields"] == [
        {
            "field": "activities.2.rep_id",
            "message": f"team member {foreign} is not in this workspace",
            "type": "value_error",
        }
    ]
    with session_scope() as s:
        stored = s.scalar(
            select(func.count()).select_from(SalesActivity).where(SalesActivity.workspace_id == workspace_id)
        )
    assert stored == 0


def test_post_activities_needs_a_key_and_a_bounded_non_empty_batch(client: TestClient, make_workspace) -> None:
    workspace_id = make_workspace()
    (rep,) = make_reps(workspace_id, 1)
    assert client.post("/v1/activities", json={"activities": [item("call", rep, AT)]}).status_code == 401
    headers = _key_for(workspace_id)
    assert client.post("/v1/activities", json={"activities": []}, headers=headers).status_code == 422
    assert client.post("/v1/activities", json={"activities": [], "workspace_id": 1}, headers=headers).status_code == 422
    assert "/v1/activities" in client.get("/openapi.json").json()["paths"]
