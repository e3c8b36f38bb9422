"""The webhook action against a local HTTP server: delivery, retries, idempotency key, and the SSRF guard."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from models.workflows import NodeRunStatus, WorkflowNodeRun, WorkflowRun, WorkflowRunStatus, WorkflowSideEffect
from tasks.workflows import engine
from tasks.workflows.webhooks import (
    WebhookRefused,
    WebhookRejected,
    WebhookUnavailable,
    is_public_address,
    post_webhook,
    resolve_target,
    url_origin,
)
from tests.workflows.driver import Driver
from tests.workflows.maps import edge, node
from tests.workflows.receiver import Script, WebhookReceiver
from workers.db import session_scope


def no_sleep(_: float) -> None:
    return None


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.10", False),
        ("169.254.169.254", False),  # cloud metadata endpoint
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("::1", False),
        ("fc00::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("224.0.0.1", False),
    ],
)
def test_public_address_classification(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def test_loopback_names_are_refused_unless_allowed() -> None:
    with pytest.raises(WebhookRefused, match="private or loopback"):
        resolve_target("http://localhost:9/hook", allow_private=False)
    with pytest.raises(WebhookRefused):
        resolve_target("http://127.0.0.1:9/hook", allow_private=False)
    assert resolve_target("http://127.0.0.1:9/hook", allow_private=True) == "127.0.0.1"


def test_delivery_carries_the_idempotency_key_and_the_original_host() -> None:
    with WebhookReceiver() as receiver:
        delivery = post_webhook(
            receiver.url("/hooks/deal?source=wf"),
            {"deal": 7},
            idempotency_key="artisan-wf-1-n",
            headers={"X-Signature": "s3cret"},
            allow_private=True,
            timeout_seconds=5,
            max_attempts=3,
        )
    assert (delivery.status_code, delivery.attempts, delivery.address) == (200, 1, "127.0.0.1")
    [request] = receiver.requests
    assert request.path == "/hooks/deal?source=wf"
    assert request.body == {"deal": 7}
    assert request.headers["idempotency-key"] == "artisan-wf-1-n"
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert request.headers["x-signature"] == "s3cret"
    assert request.headers["user-agent"].startswith("artisan-workflows/")


def test_retryable_statuses_are_retried_with_the_same_key() -> None:
    with WebhookReceiver(Script(responses=[(503, 0.0), (429, 0.0)])) as receiver:
        delivery = post_webhook(
            receiver.url(),
            {},
            idempotency_key="k1",
            headers={},
            allow_private=True,
            timeout_seconds=5,
            max_attempts=3,
            sleep=no_sleep,
        )
    assert delivery.attempts == 3
    assert [r.headers["idempotency-key"] for r in receiver.requests] == ["k1", "k1", "k1"]
    assert receiver.applied_keys == {"k1"}


def test_attempts_are_bounded_and_a_timeout_counts_as_a_failed_attempt() -> None:
    with (
        WebhookReceiver(Script(default=(200, 2.0))) as receiver,
        pytest.raises(WebhookUnavailable, match="after 2 attempts: ReadTimeout"),
    ):
        post_webhook(
            receiver.url(),
            {},
            idempotency_key="slow",
            headers={},
            allow_private=True,
            timeout_seconds=0.3,
            max_attempts=2,
            sleep=no_sleep,
        )
    assert len(receiver.requests) == 2


def test_a_final_client_error_is_not_retried() -> None:
    with WebhookReceiver(Script(default=(400, 0.0))) as receiver, pytest.raises(WebhookRejected, match="answered 400"):
        post_webhook(
            receiver.url(),
            {},
            idempotency_key="bad",
            headers={},
            allow_private=True,
            timeout_seconds=5,
            max_attempts=5,
            sleep=no_sleep,
        )
    assert len(receiver.requests) == 1


def test_redirects_are_not_followed() -> None:
    with WebhookReceiver(Script(default=(302, 0.0))) as receiver, pytest.raises(WebhookRejected, match="answered 302"):
        post_webhook(
            receiver.url(),
            {},
            idempotency_key="r",
            headers={},
            allow_private=True,
            timeout_seconds=5,
            max_attempts=1,
        )


def _webhook_map(url: str) -> dict[str, object]:
    return {
        "nodes": [
            node("start", "trigger"),
            node(
                "hook",
                "action",
                kind="webhook",
                params={
                    "url": url,
                    "headers": {"Authorization": "Bearer {{secret}}"},
                    "body": {"lead": "{{lead.id}}", "event": "qualified"},
                    "timeout_seconds": 5,
                    "max_attempts": 2,
                },
            ),
            node("after", "action", kind="notify", params={"channel": "in_app", "message": "posted"}),
        ],
        "edges": [edge("start", "hook"), edge("hook", "after")],
    }


def test_webhook_node_posts_once_and_records_the_delivery_without_secrets(
    workspace_id: int, save_map: Callable[..., int]
) -> None:
    with session_scope() as session:
        engine.set_allow_private_webhooks(session, workspace_id, True)
    with WebhookReceiver() as receiver:
        driver = Driver(workspace_id)
        run_id = driver.execute(
            save_map(_webhook_map(receiver.url("/hooks/T000/B000/tok-path-secret"))),
            {"lead": {"id": 9}, "secret": "tok-123"},
        )
        driver.drain()
    [request] = receiver.requests
    assert request.body == {"lead": 9, "event": "qualified"}
    assert request.headers["authorization"] == "Bearer tok-123"
    assert request.headers["idempotency-key"] == f"artisan-wf-{run_id}-hook"
    with session_scope() as session:
        hook = session.execute(
            select(WorkflowNodeRun).where(WorkflowNodeRun.run_id == run_id, WorkflowNodeRun.node_id == "hook")
        ).scalar_one()
        effect = session.execute(
            select(WorkflowSideEffect).where(WorkflowSideEffect.node_run_id == hook.id)
        ).scalar_one()
        run = session.get_one(WorkflowRun, run_id)
        assert run.status is WorkflowRunStatus.SUCCEEDED
        assert effect.payload == {
            "target": f"http://127.0.0.1:{receiver.port}",
            "status_code": 200,
            "attempts": 1,
            "idempotency_key": f"artisan-wf-{run_id}-hook",
        }
        assert hook.output == {"side_effect_id": effect.id, "kind": "webhook", "status_code": 200, "attempts": 1}
        # The history keeps header names and the target's origin, never header values or the URL's path.
        assert hook.input == {
            "target": f"http://127.0.0.1:{receiver.port}",
            "headers": ["Authorization"],
            "timeout_seconds": 5.0,
            "max_attempts": 2,
        }
        history = str(hook.input) + str(hook.output) + str(effect.payload)
        assert "tok-123" not in history and "tok-path-secret" not in history


def test_webhook_to_a_private_address_is_refused_when_the_workspace_does_not_allow_it(
    workspace_id: int, save_map: Callable[..., int]
) -> None:
    with WebhookReceiver() as receiver:
        driver = Driver(workspace_id)
        run_id = driver.execute(
            save_map(_webhook_map(receiver.url("/hooks/T000/B000/tok-path-secret"))), {"lead": {"id": 9}, "secret": "x"}
        )
        failures: list[Exception] = []
        while driver.step(on_error=failures.append):
            pass
    assert receiver.requests == []
    assert len(failures) == 1 and "does not allow private webhook targets" in str(failures[0])
    with session_scope() as session:
        run = session.get_one(WorkflowRun, run_id)
        assert run.status is WorkflowRunStatus.FAILED
        assert "resolves to a private or loopback address (127.0.0.1)" in (run.error or "")
        nodes = dict(
            session.execute(
                select(WorkflowNodeRun.node_id, WorkflowNodeRun.status).where(WorkflowNodeRun.run_id == run_id)
            ).all()
        )
        assert nodes == {
            "start": NodeRunStatus.SUCCEEDED,
            "hook": NodeRunStatus.FAILED,
            "after": NodeRunStatus.CANCELLED,
        }
        assert session.execute(select(WorkflowSideEffect).where(WorkflowSideEffect.run_id == run_id)).first() is None


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://hooks.slack.com/services/T0/B0/secret?x=1", "https://hooks.slack.com"),
        ("http://127.0.0.1:8080/a/b", "http://127.0.0.1:8080"),
        ("http://[::1]:9000/hook", "http://[::1]:9000"),
    ],
)
def test_url_origin_drops_path_and_query(url: str, origin: str) -> None:
    assert url_origin(url) == origin
