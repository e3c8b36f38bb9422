"""A consumer bootstep that keeps bad messages and broker drops from costing the worker or its jobs.

Poison messages: Celery already acks or rejects an undecodable body, an unknown task name or an invalid
message so the queue moves on; this step records each one in `dead_letters`, and checks the argument shape
of known tasks before they reach the pool, so a message of the wrong shape is recorded too and can never
raise inside the consumer loop.

Broker drops: with `worker_cancel_long_running_tasks_on_connection_loss` Celery terminates the late-acked runs
in flight when the broker connection is lost; their messages may be gone with the broker (a Redis restart),
and their ledger rows would sit in `running` until the sweeper's running cut-off (the longest hard time
limit). This step hands those rows back to `queued`, so the sweeper republishes them after its grace period.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from celery import bootsteps, signals
from celery.exceptions import InvalidTaskError
from celery.worker.consumer.tasks import Tasks
from kombu.exceptions import ContentDisallowed, DecodeError
from pydantic import ValidationError
from sqlalchemy import func, update

from models.core import Job, JobStatus
from models.operations import DeadLetterReason
from workers import deadletters
from workers.contracts import TASK_ARGS
from workers.db import get_engine
from workers.ledger import describe_validation_error

log = logging.getLogger("artisan.consumer")

_CHECKED = "_artisan_checked"


def argument_problem(task: str, body: Any, protocol2: bool = True) -> tuple[str, bool] | None:
    """What is wrong with a decoded task message body, if anything, and whether Celery can still run it.

    Returns (reason, runnable). A runnable message goes on to the task, which fails its ledger row with the
    same reason; one Celery could not even unpack is set aside here (it would raise inside the consumer).
    """
    if not protocol2 and isinstance(body, dict):  # protocol 1 carries the call in the payload
        args, kwargs = body.get("args", []), body.get("kwargs", {})
    elif isinstance(body, list | tuple) and len(body) == 3 and isinstance(body[2], dict | type(None)):
        args, kwargs = body[0], body[1]
    else:
        return f"message body for {task} is not [args, kwargs, options]", False
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        return (
            f"message for {task} has args of type {type(args).__name__} and kwargs of type {type(kwargs).__name__}",
            False,
        )
    # The registry as the app import filled it (load_task_args would rescan the task packages on every message).
    model = TASK_ARGS.get(task)
    if model is None:
        return None  # Celery's own tasks (chords, backend cleanup) have no argument model and take positional args
    if args:
        return f"{task} takes keyword arguments only", True
    try:
        model.model_validate(kwargs)
    except ValidationError as exc:
        return describe_validation_error(task, exc), True
    return None


def _workspace_of(body: Any) -> int | None:
    kwargs = body[1] if isinstance(body, list | tuple) and len(body) == 3 else None
    value = kwargs.get("workspace_id") if isinstance(kwargs, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ack(message: Any) -> None:
    try:
        message.ack()
    except Exception as exc:  # already acked, or the channel is gone: the broker redelivers, we record again
        log.warning("event=dead-letter-ack-failed error=%s", type(exc).__name__)


def _reject(c: Any, message: Any) -> None:
    message.reject_log_error(log, c.connection_errors)


class ConsumerGuard(bootsteps.StartStopStep):
    """Installed on every worker's consumer (see `_install`): dead letters and connection-loss hand-back.

    Celery's own handlers for poison messages log the message body and headers (argument values, possibly
    transcript text); these replacements log the digest instead and record the dead letter, then ack or
    reject exactly as Celery does so the queue moves on.
    """

    requires = (Tasks,)
    label = "artisan-consumer-guard"

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        # Instance attributes shadow the Consumer's methods; Tasks.start and the task handler read them later.
        c.on_decode_error = self._on_decode_error(c)
        c.on_unknown_message = self._on_unknown_message(c)
        c.on_unknown_task = self._on_unknown_task(c)
        c.on_invalid_task = self._on_invalid_task(c)
        c.on_connection_error_after_connected = self._wrap_connection_loss(c, c.on_connection_error_after_connected)

    def start(self, c: Any) -> None:
        # Tasks.start rebuilt the strategies (it does on every reconnect): check arguments before each one.
        for name, strategy in list(c.strategies.items()):
            if not getattr(strategy, _CHECKED, False):
                c.strategies[name] = self._checked_strategy(c, name, strategy)

    # --- poison messages -------------------------------------------------------------------------------
    @staticmethod
    def _on_decode_error(c: Any) -> Callable[..., Any]:
        def on_decode_error(message: Any, exc: BaseException) -> None:
            facts = deadletters.message_facts(message)
            reason = f"undecodable message body: {type(exc).__name__}"
            deadletters.record(DeadLetterReason.UNDECODABLE, facts, reason, worker=c.hostname)
            deadletters.fail_ledger_row(facts.task_id, reason)
            # Acked, as Celery does: a body that cannot be decoded now never will be.
            _ack(message)

        return on_decode_error

    @staticmethod
    def _on_unknown_message(c: Any) -> Callable[..., Any]:
        def on_unknown_message(body: Any, message: Any) -> None:
            facts = deadletters.message_facts(message)
            reason = "not a Celery task message (no task name)"
            deadletters.record(DeadLetterReason.MALFORMED, facts, reason, worker=c.hostname)
            _reject(c, message)
            signals.task_rejected.send(sender=c, message=message, exc=None)

        return on_unknown_message

    @staticmethod
    def _on_unknown_task(c: Any) -> Callable[..., Any]:
        def on_unknown_task(body: Any, message: Any, exc: BaseException) -> None:
            facts = deadletters.message_facts(message)
            reason = f"unknown task {facts.task!r}: no worker registers it"
            deadletters.record(DeadLetterReason.UNKNOWN_TASK, facts, reason, worker=c.hostname)
            deadletters.fail_ledger_row(facts.task_id, reason)
            _reject(c, message)
            if c.event_dispatcher and facts.task_id:
                # Flower shows it as failed, as it does for Celery's own handler.
                c.event_dispatcher.send("task-failed", uuid=facts.task_id, exception=f"NotRegistered({facts.task!r})")
            signals.task_unknown.send(sender=c, message=message, exc=exc, name=facts.task, id=facts.task_id)

        return on_unknown_task

    @staticmethod
    def _on_invalid_task(c: Any) -> Callable[..., Any]:
        def on_invalid_task(body: Any, message: Any, exc: BaseException) -> None:
            facts = deadletters.message_facts(message)
            reason = f"invalid task message: {type(exc).__name__}"
            deadletters.record(DeadLetterReason.MALFORMED, facts, reason, worker=c.hostname)
            deadletters.fail_ledger_row(facts.task_id, reason)
            _reject(c, message)
            signals.task_rejected.send(sender=c, message=message, exc=exc)

        return on_invalid_task

    @staticmethod
    def _checked_strategy(c: Any, name: str, strategy: Callable[..., Any]) -> Callable[..., Any]:
        passthrough = (InvalidTaskError, ContentDisallowed, DecodeError, *c.connection_errors, *c.channel_errors)

        def set_aside(message: Any, reason: str, kind: DeadLetterReason, workspace_id: int | None = None) -> None:
            facts = deadletters.message_facts(message)
            deadletters.record(kind, facts, reason, worker=c.hostname, workspace_id=workspace_id)
            deadletters.fail_ledger_row(facts.task_id, reason)
            _ack(message)

        def checked(message: Any, body: Any, *args: Any, **kwargs: Any) -> Any:
            problem: tuple[str, bool] | None = None
            decoded: Any = None
            try:
                decoded = message.decode() if body is None else body
                problem = argument_problem(name, decoded, protocol2=body is None)
            except Exception as exc:
                # Undecodable: the strategy raises DecodeError and on_decode_error records it.
                log.debug("task=%s event=precheck-skipped error=%s", name, type(exc).__name__)
            if problem is not None:
                reason, runnable = problem
                if not runnable:
                    set_aside(message, reason, DeadLetterReason.BAD_ARGUMENTS, _workspace_of(decoded))
                    return None
                deadletters.record(
                    DeadLetterReason.BAD_ARGUMENTS,
                    deadletters.message_facts(message),
                    reason,
                    worker=c.hostname,
                    workspace_id=_workspace_of(decoded),
                )
                # The task fails its own ledger row with the same reason (once, without retries).
            try:
                return strategy(message, body, *args, **kwargs)
            except passthrough:
                raise
            except Exception as exc:
                # Anything else would escape into the consumer loop and stop the worker, and the message,
                # restored unacked, would stop the next one too.
                set_aside(message, f"message could not be unpacked: {type(exc).__name__}", DeadLetterReason.MALFORMED)
                return None

        setattr(checked, _CHECKED, True)
        return checked

    # --- broker connection loss ------------------------------------------------------------------------
    @staticmethod
    def _wrap_connection_loss(c: Any, original: Callable[..., Any]) -> Callable[..., Any]:
        def on_connection_error_after_connected(exc: BaseException) -> Any:
            from celery.worker.state import active_requests

            in_flight = [
                r.id
                for r in tuple(active_requests)
                if r.task.acks_late and not r.acknowledged and r.time_start and r.id
            ]
            result = original(exc)
            if in_flight and c.app.conf.worker_cancel_long_running_tasks_on_connection_loss:
                hand_back_runs(in_flight)
            return result

        return on_connection_error_after_connected


def hand_back_runs(task_ids: list[str]) -> int:
    """Put runs Celery cancelled on a connection loss back to `queued` (counted as lost runs) for the sweeper.

    A run that finished before the cancel already left `running` and is not touched; one still alive in a pool
    that cannot cancel holds its advisory lock, so a republished copy skips it rather than running it twice.
    """
    ids = []
    for task_id in task_ids:
        try:
            ids.append(uuid.UUID(task_id))
        except ValueError:
            continue
    if not ids:
        return 0
    try:
        with get_engine().begin() as conn:
            rows = conn.execute(
                update(Job)
                .where(Job.id.in_(ids), Job.status == JobStatus.RUNNING)
                .values(status=JobStatus.QUEUED, lost_runs=Job.lost_runs + 1, published_at=func.clock_timestamp())
                .returning(Job.id)
            ).all()
    except Exception as exc:
        log.error("event=hand-back-failed jobs=%d error=%s", len(ids), type(exc).__name__)
        return 0
    for row in rows:
        log.warning("job=%s event=handed-back reason=broker-connection-lost", row.id)
    return len(rows)


@signals.worker_init.connect
def _install(sender: Any = None, **_: Any) -> None:
    # Before the worker builds its consumer blueprint: every worker (CLI or embedded) gets the step.
    if sender is not None:
        sender.app.steps["consumer"].add(ConsumerGuard)
