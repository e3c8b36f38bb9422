"""An isolated PostgreSQL database and Redis db number for one test (or benchmark) run, claimed and released."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import psycopg
import redis
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BASE_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
LOCK_TTL_SECONDS = 4 * 3600


@dataclass
class Isolated:
    database_url: str
    redis_url: str
    database: str
    redis_db: int

    def release(self) -> None:
        redis.Redis.from_url(f"{BASE_REDIS_URL}/{self.redis_db}").flushdb()
        redis.Redis.from_url(f"{BASE_REDIS_URL}/0").delete(_lock_key(self.redis_db))
        drop_database(self.database)


def _lock_key(db: int) -> str:
    return f"artisan-jobs:test-redis-db:{db}"


def claim_redis_db(preferred: int | None = None) -> int:
    """Take a free Redis db number (1..15) with a lock in db 0, so parallel runs never share one."""
    lock = redis.Redis.from_url(f"{BASE_REDIS_URL}/0")
    candidates = [preferred] if preferred is not None else list(range(1, 16))
    for db in candidates:
        if lock.set(_lock_key(db), str(os.getpid()), nx=True, ex=LOCK_TTL_SECONDS):
            redis.Redis.from_url(f"{BASE_REDIS_URL}/{db}").flushdb()
            return db
    raise RuntimeError("no free Redis db number (1..15): another run holds them all")


def _admin_conninfo() -> str:
    url = make_url(BASE_DATABASE_URL)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(name: str) -> None:
    with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url_for(name: str) -> str:
    return make_url(BASE_DATABASE_URL).set(database=name).render_as_string(hide_password=False)


def alembic_config(database_url: str) -> Config:
    config = Config(os.path.join(ROOT, "alembic.ini"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def migrate(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "heads")


def isolate(prefix: str = "artisan_test", redis_db: int | None = None, database: str | None = None) -> Isolated:
    """Create and migrate a fresh database, claim a Redis db, and point this process's settings at both."""
    db = claim_redis_db(redis_db)
    name = database or f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    create_database(name)
    database_url = database_url_for(name)
    migrate(database_url)
    redis_url = f"{BASE_REDIS_URL}/{db}"
    os.environ["DATABASE_URL"] = database_url
    os.environ["REDIS_URL"] = redis_url
    return Isolated(database_url=database_url, redis_url=redis_url, database=name, redis_db=db)
