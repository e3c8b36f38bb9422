"""celeryconfig's promises: JSON only, late acks, routes per area, time limits below the visibility timeout."""

from __future__ import annotations

import celeryconfig
from workers.app import app
from workers.queues import QUEUE_TIME_LIMITS, Queue


def test_reliability_settings() -> None:
    conf = app.conf
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_acks_late is True and conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.result_backend is None and conf.task_ignore_result is True
    assert conf.worker_send_task_events is True and conf.task_send_sent_event is True
    assert conf.broker_connection_retry_on_startup is True
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is True
    assert conf.worker_soft_shutdown_timeout > 0
    assert conf.worker_max_tasks_per_child and conf.worker_max_memory_per_child
    assert conf.timezone == "UTC" and conf.enable_utc is True


def test_visibility_timeout_exceeds_every_hard_time_limit() -> None:
    longest = max(hard for _, hard in QUEUE_TIME_LIMITS.values())
    assert celeryconfig.broker_transport_options["visibility_timeout"] > longest
    for soft, hard in QUEUE_TIME_LIMITS.values():
        assert soft < hard


def test_every_registered_task_routes_to_its_area_queue_with_its_queue_limits() -> None:
    expected = {"system": "default", "billing": "billing", "growth": "analytics", "sales": "analytics", "ai": "ai"}
    expected |= {"workflows": "default", "operations": "default"}
    # Test modules register probe tasks of their own ("tests.*"); everything else belongs to an area.
    names = [n for n in app.tasks if not n.startswith(("celery.", "tests."))]
    assert names
    for name in names:
        area = name.split(".", 1)[0]
        route = app.amqp.router.route({}, name)
        assert route["queue"].name == expected[area], name
        soft, hard = QUEUE_TIME_LIMITS[Queue(expected[area])]
        task = app.tasks[name]
        assert (task.soft_time_limit, task.time_limit) == (soft, hard), name
