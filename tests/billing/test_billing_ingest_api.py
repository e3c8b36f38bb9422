"""POST /v1/usage/events and GET /v1/subscriptions/{id}/usage through the real app and database."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from tasks.billing.aggregation import aggregate_usage
from tasks.billing.ingest import ingest_events
from workers.db import session_scope


def event(sub_id: int, metric: str = "emails_sent", quantity: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": extra.pop("event_id", f"evt-{uuid.uuid4().hex}"),
        "subscription_id": sub_id,
        "metric": metric,
        "quantity": quantity,
        "occurred_at": extra.pop("occurred_at", datetime.now(UTC).isoformat()),
        **extra,
    }


def stored(sub_id: int) -> int:
    with session_scope() as s:
        return int(
            s.execute(
                text("SELECT coalesce(sum(quantity), 0) FROM usage_events WHERE subscription_id = :id"), {"id": sub_id}
            ).scalar_one()
        )


def test_batch_stores_valid_events_reports_bad_ones_and_duplicates(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int], api_client: Callable[[int], Any]
) -> None:
    ws = new_workspace()
    other_ws = new_workspace()
    sub = new_subscription(ws, "starter", now=datetime.now(UTC) - timedelta(days=1))
    foreign_sub = new_subscription(other_ws, "starter")
    client = api_client(ws)
    repeated = f"evt-{uuid.uuid4().hex}"
    batch = [
        event(sub, quantity=3, event_id=repeated),
        event(sub, metric="no_such_metric"),
        event(sub, quantity=0),
        event(foreign_sub),
        event(sub, occurred_at=(datetime.now(UTC) + timedelta(minutes=10)).isoformat()),
        event(sub, quantity=5, event_id=repeated),
        event(sub, metric="leads_created", quantity=2),
        event(sub, occurred_at="2026-01-01T00:00:00"),
    ]
    response = client.post("/v1/usage/events", json={"events": batch})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 2
    assert body["duplicate_indexes"] == [5]
    rejected = {r["index"]: r["reason"] for r in body["rejected"]}
    assert sorted(rejected) == [1, 2, 3, 4, 7]
    assert "metric" in rejected[1]
    assert "quantity" in rejected[2]
    assert "no such subscription" in rejected[3]
    assert "future" in rejected[4]
    assert "occurred_at" in rejected[7]
    assert stored(sub) == 5
    assert stored(foreign_sub) == 0

    # The same batch again: nothing new, the stored ones reported as duplicates.
    again = client.post("/v1/usage/events", json={"events": batch}).json()
    assert again["accepted"] == 0
    assert again["duplicate_indexes"] == [0, 5, 6]
    assert stored(sub) == 5


def test_malformed_batches_are_refused_whole(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int], api_client: Callable[[int], Any]
) -> None:
    ws = new_workspace()
    sub = new_subscription(ws)
    client = api_client(ws)
    assert client.post("/v1/usage/events", json={"events": [{}] * 10_001}).status_code == 422
    assert client.post("/v1/usage/events", json={"events": []}).status_code == 422
    assert client.post("/v1/usage/events", json={"rows": [event(sub)]}).status_code == 422
    not_json = client.post("/v1/usage/events", content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422
    assert stored(sub) == 0
    assert (
        client.post("/v1/usage/events", json={"events": [event(sub)]}, headers={"Authorization": ""}).status_code == 401
    )


def test_usage_is_exact_before_and_after_aggregation(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int], api_client: Callable[[int], Any]
) -> None:
    ws = new_workspace("Europe/Berlin")
    sub = new_subscription(ws, "free", now=datetime.now(UTC) - timedelta(hours=1))
    client = api_client(ws)
    assert client.post("/v1/usage/events", json={"events": [event(sub, quantity=60)]}).status_code == 200

    def used() -> dict[str, Any]:
        response = client.get(f"/v1/subscriptions/{sub}/usage")
        assert response.status_code == 200, response.text
        return {m["metric"]: m for m in response.json()["metrics"]}

    before = used()["emails_sent"]
    assert (before["used"], before["limit"], before["remaining"], before["status"]) == (60, 100, 40, "ok")
    with session_scope() as s:
        aggregate_usage(s)
    assert used()["emails_sent"]["used"] == 60
    # A second batch sits in the tail on top of the aggregate: still exact, now at 90% of the Free limit.
    assert client.post("/v1/usage/events", json={"events": [event(sub, quantity=30)]}).status_code == 200
    after = used()["emails_sent"]
    assert (after["used"], after["status"], after["percent_used"]) == (90, "warning", 90.0)
    assert used()["campaigns_created"]["limit"] == 1
    assert used()["api_calls"]["limit"] is None

    other = api_client(new_workspace())
    assert other.get(f"/v1/subscriptions/{sub}/usage").status_code == 404


def test_ingest_task_function_uses_the_same_rules(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int]
) -> None:
    ws = new_workspace()
    sub = new_subscription(ws)
    with session_scope() as s:
        result = ingest_events(s, ws, [event(sub, quantity=7), {"event_id": "x"}])
    assert result.accepted == 1
    assert [r.index for r in result.rejected] == [1]
    assert stored(sub) == 7


def test_a_full_batch_of_10000_events_fits_the_usage_route_but_not_other_routes(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int], api_client: Callable[[int], Any]
) -> None:
    ws = new_workspace()
    sub = new_subscription(ws, "enterprise", now=datetime.now(UTC) - timedelta(days=1))
    client = api_client(ws)
    batch = [event(sub) for _ in range(10_000)]
    response = client.post("/v1/usage/events", json={"events": batch})
    assert response.status_code == 200, response.text[:300]
    assert response.json()["accepted"] == 10_000
    assert stored(sub) == 10_000
    # The same 1.3 MB elsewhere is over the general 1 MiB cap.
    padded = {"task": "system.ping", "args": {"message": "x"}, "pad": "y" * 1_300_000}
    assert client.post("/v1/jobs", json=padded).status_code == 413


def test_an_event_id_another_workspace_used_is_never_reported_as_a_counted_duplicate(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int], api_client: Callable[[int], Any]
) -> None:
    ws, other_ws = new_workspace(), new_workspace()
    sub = new_subscription(ws, "starter", now=datetime.now(UTC) - timedelta(days=1))
    other_sub = new_subscription(other_ws, "starter", now=datetime.now(UTC) - timedelta(days=1))
    shared_id = f"evt-{uuid.uuid4().hex}"
    first = api_client(other_ws).post(
        "/v1/usage/events", json={"events": [event(other_sub, quantity=4, event_id=shared_id)]}
    )
    assert first.json()["accepted"] == 1
    # Event ids are unique across the platform: this workspace's event was not stored, so it must not be told
    # "duplicate" (a producer treats that as counted and drops it); it is rejected, and the other tenant's event
    # is neither changed nor described.
    body = api_client(ws).post("/v1/usage/events", json={"events": [event(sub, quantity=9, event_id=shared_id)]}).json()
    assert (body["accepted"], body["duplicate_indexes"]) == (0, [])
    assert [r["index"] for r in body["rejected"]] == [0]
    assert "event_id" in body["rejected"][0]["reason"]
    assert str(other_ws) not in body["rejected"][0]["reason"] and str(other_sub) not in body["rejected"][0]["reason"]
    assert (stored(sub), stored(other_sub)) == (0, 4)
    # A real repeat inside the caller's own workspace is still a duplicate.
    own_id = f"evt-{uuid.uuid4().hex}"
    with session_scope() as s:
        assert ingest_events(s, ws, [event(sub, quantity=2, event_id=own_id)]).accepted == 1
    with session_scope() as s:
        again = ingest_events(
            s, ws, [event(sub, quantity=2, event_id=own_id), event(sub, quantity=3, event_id=shared_id)]
        )
    assert (again.accepted, again.duplicates, [r.index for r in again.rejected]) == (0, [0], [1])


def test_an_event_id_with_a_nul_character_is_rejected_alone(
    new_workspace: Callable[..., int], new_subscription: Callable[..., int], api_client: Callable[[int], Any]
) -> None:
    ws = new_workspace()
    sub = new_subscription(ws, "starter", now=datetime.now(UTC) - timedelta(days=1))
    # PostgreSQL text cannot hold U+0000: left to the INSERT, it would fail the whole batch with a 500.
    batch = [event(sub, quantity=2, event_id=f"evt-{uuid.uuid4().hex}\u0000"), event(sub, quantity=5)]
    response = api_client(ws).post("/v1/usage/events", json={"events": batch})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == [0]
    assert "event_id" in body["rejected"][0]["reason"]
    assert stored(sub) == 5
