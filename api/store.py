"""The enqueue path's ledger write on async psycopg: one autocommitted INSERT per job, no thread hop.

The other routes use the sync SQLAlchemy session (api.deps.db_session); this one is the hot path, so it runs
on the event loop with a small pool of autocommit connections and a statement psycopg prepares once.
Semantics are those of workers.ledger.record_job: same columns, same idempotency rule, same args hash.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, OperationalError
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url

from models.core import JobStatus
from workers.ledger import IdempotencyConflict, args_digest
from workers.settings import get_settings

POOL_MAX_SIZE = 10
# How long a request waits for a pooled connection before it is answered 503 (PostgreSQL down or overloaded):
# well under a client's timeout, so the client gets a Retry-After instead of a hung request.
POOL_TIMEOUT_SECONDS = 5.0

# The partial unique index (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL arbitrates;
# a row without a key never conflicts (its id is a fresh uuid4).
_INSERT = """
INSERT INTO jobs (id, workspace_id, task, args, status, idempotency_key, args_hash, run_at)
VALUES (%(id)s, %(workspace_id)s, %(task)s, %(args)s, 'queued', %(key)s, %(hash)s, coalesce(%(run_at)s, now()))
ON CONFLICT (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id
"""
_EXISTING = """
SELECT id, task, args_hash, status FROM jobs WHERE workspace_id = %(workspace_id)s AND idempotency_key = %(key)s
"""


@dataclass(frozen=True)
class Recorded:
    id: uuid.UUID
    status: JobStatus
    created: bool


def conninfo(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class AsyncLedger:
    """An autocommit connection pool for each event loop the app's lifespan started it in.

    psycopg async connections belong to their loop. Under uvicorn there is one loop for the process's life; a
    caller without a lifespan (a TestClient used outside `with`, which runs every request on a new loop) gets a
    one-shot connection instead, so no pool is left behind on a dead loop holding server connections.
    """

    def __init__(self) -> None:
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool] = (
            weakref.WeakKeyDictionary()
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if loop in self._pools:
            return
        pool = AsyncConnectionPool(
            conninfo(get_settings().database_url),
            min_size=1,
            max_size=POOL_MAX_SIZE,
            timeout=POOL_TIMEOUT_SECONDS,
            open=False,
            kwargs={"autocommit": True, "connect_timeout": 5},
        )
        # Not waiting for the first connection: the API starts (and /readyz says why) while PostgreSQL is down.
        await pool.open(wait=False)
        self._pools[loop] = pool

    async def close(self) -> None:
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        pool = self._pools.get(asyncio.get_running_loop())
        if pool is not None:
            async with pool.connection() as conn:
                yield conn
            return
        conn = await AsyncConnection.connect(conninfo(get_settings().database_url), autocommit=True, connect_timeout=5)
        try:
            yield conn
        finally:
            await conn.close()

    async def record(
        self,
        task: str,
        args: dict[str, Any],
        *,
        workspace_id: int,
        idempotency_key: str | None,
        run_at: datetime | None,
    ) -> Recorded:
        """Insert a validated, normalised job; an existing idempotency key with the same payload returns it."""
        digest = args_digest(task, args)
        params = {
            "id": uuid.uuid4(),
            "workspace_id": workspace_id,
            "task": task,
            "args": Jsonb(args),
            "key": idempotency_key,
            "hash": digest,
            "run_at": run_at,
        }
        for attempt in (1, 2):
            try:
                async with self.connection() as conn:
                    cur = await conn.execute(_INSERT, params)
                    row = await cur.fetchone()
                    if row is not None:
                        return Recorded(id=row[0], status=JobStatus.QUEUED, created=True)
                    cur = await conn.execute(_EXISTING, {"workspace_id": workspace_id, "key": idempotency_key})
                    existing = await cur.fetchone()
                break
            except OperationalError:
                # A pooled connection that died (PostgreSQL restarted) is dropped by the pool on return; no
                # check query per request, so the first use finds out: try once more on a fresh connection.
                # A retry after a commit whose answer was lost hits the same id and fails loudly, never duplicates.
                if attempt == 2:
                    raise
        if existing is None:
            raise RuntimeError("idempotency conflict without an existing row")
        job_id, existing_task, existing_hash, status = existing
        if existing_task != task or existing_hash != digest:
            raise IdempotencyConflict(job_id)
        return Recorded(id=job_id, status=JobStatus(status), created=False)


ledger = AsyncLedger()
