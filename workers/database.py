"""Create the database named by DATABASE_URL if missing, and apply every migration head."""

from __future__ import annotations

import os

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql
from sqlalchemy.engine import make_url

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ensure_database(database_url: str) -> bool:
    """Create the database if it does not exist; returns True when it was created."""
    url = make_url(database_url)
    name = url.database
    if not name:
        raise ValueError("DATABASE_URL names no database")
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def alembic_config(database_url: str) -> Config:
    config = Config(os.path.join(ROOT, "alembic.ini"))
    config.attributes["database_url"] = database_url
    return config


def migrate(database_url: str, revision: str = "heads") -> None:
    command.upgrade(alembic_config(database_url), revision)
