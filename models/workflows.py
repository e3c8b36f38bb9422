"""Workflow maps and their durable execution history: runs, node runs and the side effects they caused."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, pg_enum


class WorkflowRunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class NodeRunStatus(enum.StrEnum):
    # Created but not started: a join still waiting for some of its incoming branches.
    PENDING = "pending"
    RUNNING = "running"
    # A wait node between its first run and its resume time.
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    # On a path a condition did not take; never ran, counts as done.
    SKIPPED = "skipped"
    FAILED = "failed"
    # The run failed elsewhere before this node could finish.
    CANCELLED = "cancelled"


TERMINAL_NODE_STATUSES = (NodeRunStatus.SUCCEEDED, NodeRunStatus.SKIPPED, NodeRunStatus.FAILED, NodeRunStatus.CANCELLED)


class WorkflowNodeType(enum.StrEnum):
    TRIGGER = "trigger"
    CONDITION = "condition"
    ACTION = "action"
    WAIT = "wait"
    BRANCH = "branch"
    JOIN = "join"


class SideEffectKind(enum.StrEnum):
    SEND_EMAIL = "send_email"
    CREATE_TASK = "create_task"
    UPDATE_CRM = "update_crm"
    WEBHOOK = "webhook"
    NOTIFY = "notify"


class WorkflowSetting(Base):
    """Per-workspace workflow policy (kept out of the core workspaces table, which this area does not own)."""

    __tablename__ = "workflow_settings"

    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    # Off by default: a webhook to 10.x/127.x/169.254.x could reach internal services (SSRF).
    allow_private_webhooks: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    updated_at: Mapped[datetime] = created_at_column()


class WorkflowMap(Base):
    """The canvas: a named graph of nodes and edges; ``version`` goes up on every definition change."""

    __tablename__ = "workflow_maps"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    # {"nodes": [{"id", "type", "config"}], "edges": [{"source", "target", "when"?}]}
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()


class WorkflowRun(Base):
    """One execution of a map; keeps the definition it started with, so editing the map never changes a run."""

    __tablename__ = "workflow_runs"
    __table_args__ = (
        Index("ix_workflow_runs_workflow_created", "workflow_id", "created_at"),
        # Operators look for runs that never finished.
        Index("ix_workflow_runs_running", "created_at", postgresql_where=text("status = 'running'")),
        CheckConstraint("nodes_done >= 0 AND nodes_done <= nodes_total", name="nodes_done_in_range"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflow_maps.id", ondelete="CASCADE"))
    workflow_version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    trigger_payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # The ledger job that started the run: a redelivered workflows.execute finds its run instead of starting two.
    trigger_job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), unique=True)
    status: Mapped[WorkflowRunStatus] = mapped_column(
        pg_enum(WorkflowRunStatus, "workflow_run_status"), server_default=WorkflowRunStatus.RUNNING.value
    )
    # Atomic completion counter: the node run that brings nodes_done to nodes_total marks the run succeeded.
    nodes_total: Mapped[int] = mapped_column(Integer)
    nodes_done: Mapped[int] = mapped_column(Integer, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None]


class WorkflowNodeRun(Base):
    """Execution history of one node in one run: input, output, status, attempts and timestamps."""

    __tablename__ = "workflow_node_runs"
    __table_args__ = (
        UniqueConstraint("run_id", "node_id"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        CheckConstraint("arrivals >= taken_arrivals AND taken_arrivals >= 0", name="arrivals_consistent"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(String(64))
    node_type: Mapped[WorkflowNodeType] = mapped_column(pg_enum(WorkflowNodeType, "workflow_node_type"))
    status: Mapped[NodeRunStatus] = mapped_column(
        pg_enum(NodeRunStatus, "workflow_node_status"), server_default=NodeRunStatus.PENDING.value
    )
    input: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    # Join bookkeeping: incoming edges resolved so far, and how many of them were actually taken.
    arrivals: Mapped[int] = mapped_column(Integer, server_default="0")
    taken_arrivals: Mapped[int] = mapped_column(Integer, server_default="0")
    # A wait node's resume time (its resume job is a ledger row with this run_at).
    resume_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class WorkflowSideEffect(Base):
    """What an action node did, at most one row per node run: the record that makes a repeat a no-op.

    send_email, create_task, update_crm and notify are intents the main app carries out from these rows;
    a webhook row records the delivery (status code, idempotency key) after the receiver accepted it.
    """

    __tablename__ = "workflow_side_effects"
    __table_args__ = (
        UniqueConstraint("node_run_id"),
        Index("ix_workflow_side_effects_workspace_kind_created", "workspace_id", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    run_id: Mapped[int] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"), index=True)
    node_run_id: Mapped[int] = mapped_column(ForeignKey("workflow_node_runs.id", ondelete="CASCADE"))
    kind: Mapped[SideEffectKind] = mapped_column(pg_enum(SideEffectKind, "workflow_action_kind"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = created_at_column()
