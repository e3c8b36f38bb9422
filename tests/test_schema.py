"""Migrations and models agree: `upgrade heads` on an empty database yields the models; `downgrade base` works."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.dialects.postgresql import JSONB

import models
from tests.support.env import alembic_config, create_database, database_url_for, drop_database


@pytest.fixture
def empty_database() -> Iterator[str]:
    name = f"artisan_schema_{uuid.uuid4().hex[:8]}"
    create_database(name)
    try:
        yield database_url_for(name)
    finally:
        drop_database(name)


def test_upgrade_heads_yields_exactly_the_models_and_downgrade_base_empties_it(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "heads")
    engine = create_engine(empty_database)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), models.Base.metadata)
            assert diff == [], f"models and migrations differ: {diff}"
            plans = conn.execute(text("SELECT code::text, price_cents FROM plans ORDER BY rank")).all()
        assert [tuple(p) for p in plans] == [
            ("free", 0),
            ("starter", 4900),
            ("professional", 29900),
            ("enterprise", 99900),
        ]

        command.downgrade(config, "base")
        with engine.connect() as conn:
            left = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
            enums = conn.execute(text("SELECT typname FROM pg_type WHERE typtype = 'e'")).scalars().all()
        assert left == []
        assert enums == []
    finally:
        engine.dispose()


def test_every_table_is_a_snake_case_plural_and_tenant_tables_carry_workspace_id() -> None:
    shared = {"plans", "workspaces", "alembic_version"}
    for table in models.Base.metadata.sorted_tables:
        assert table.name == table.name.lower() and table.name.endswith("s"), table.name
        # Cross-tenant tables (plans, learned model weights, counters) say so with info={"global": True}.
        if table.name not in shared and table.name != "jobs" and not table.info.get("global"):
            assert "workspace_id" in table.c or _reaches_workspace(table), f"{table.name} has no tenant column"
        for column in table.c:
            if column.name.endswith("_at"):
                assert getattr(column.type, "timezone", False), f"{table.name}.{column.name} is not timestamptz"
            if column.name.endswith("_cents") and not isinstance(column.type, JSONB):
                assert column.type.python_type is int, f"{table.name}.{column.name} is not integer cents"


def _reaches_workspace(table) -> bool:
    # Child rows (invoice lines, node runs) belong to a tenant through their parent's foreign key.
    return any("workspace_id" in fk.column.table.c for fk in table.foreign_keys)
