"""API rate limits by plan: one Redis token bucket per workspace, shared by every API process.

The bucket's size (burst) and refill rate come from `plans.api_burst` / `plans.api_rate_per_second` of the
workspace's live subscription (free-plan limits when it has none), looked up once and cached per process.
The check is one Lua script run atomically inside Redis on Redis's own clock, so several API processes (or
hosts with skewed clocks) draw from the same bucket and never grant more than the plan allows.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from sqlalchemy import text
from sqlalchemy.engine import Engine

from models.core import PlanTier

log = logging.getLogger("artisan.api")

# A plan change reaches the limiter within this long (the lookup is one query per workspace per period).
PLAN_CACHE_SECONDS = 30.0
# While Redis is unreachable requests are let through (the ledger, not the limiter, must keep working), and the
# warning is logged at most this often.
FAIL_OPEN_LOG_SECONDS = 30.0
KEY_PREFIX = "artisan:ratelimit:"

# KEYS[1] bucket; ARGV: refill per second, burst, cost. Returns {allowed, tokens left, seconds until `cost` fits}.
# Floats go back as strings: Redis truncates Lua numbers to integers.
TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
end
local allowed = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(math.max(now, ts)))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(tokens), tostring(wait)}
"""


@dataclass(frozen=True)
class PlanLimit:
    plan: PlanTier
    rate_per_second: int
    burst: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    retry_after_seconds: int
    limit: PlanLimit


# The plan that decides a workspace's limits: its highest-ranked live subscription.
_PLAN_SQL = text(
    """
    SELECT p.code, p.api_rate_per_second, p.api_burst
    FROM subscriptions s JOIN plans p ON p.code = s.plan_code
    WHERE s.workspace_id = :workspace_id
      AND s.status IN ('trialing', 'active', 'past_due')
      AND s.ended_at IS NULL
    ORDER BY p.rank DESC
    LIMIT 1
    """
)
_FREE_SQL = text("SELECT code, api_rate_per_second, api_burst FROM plans WHERE code = 'free'")


class PlanLimits:
    """workspace id -> PlanLimit, read from PostgreSQL and cached for PLAN_CACHE_SECONDS."""

    def __init__(self, ttl_seconds: float = PLAN_CACHE_SECONDS) -> None:
        self.ttl_seconds = ttl_seconds
        self._lock = threading.Lock()
        self._entries: dict[int, tuple[float, PlanLimit]] = {}

    def cached(self, workspace_id: int) -> PlanLimit | None:
        entry = self._entries.get(workspace_id)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def load(self, engine: Engine, workspace_id: int) -> PlanLimit:
        with engine.connect() as conn:
            row = conn.execute(_PLAN_SQL, {"workspace_id": workspace_id}).one_or_none()
            if row is None:
                row = conn.execute(_FREE_SQL).one()
        limit = PlanLimit(plan=PlanTier(row.code), rate_per_second=row.api_rate_per_second, burst=row.api_burst)
        with self._lock:
            if len(self._entries) > 50_000:
                self._entries.clear()
            self._entries[workspace_id] = (time.monotonic() + self.ttl_seconds, limit)
        return limit

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


plan_limits = PlanLimits()


class TokenBucket:
    """The Redis side: an async client per event loop the app's lifespan started (redis.asyncio connections
    belong to their loop); a caller without a lifespan gets a one-shot client, closed after the call."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._scripts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncScript] = weakref.WeakKeyDictionary()
        self._last_warning = 0.0

    def _new_client(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(self.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if loop not in self._scripts:
            # EVALSHA, reloading the script by itself after a Redis restart or SCRIPT FLUSH.
            self._scripts[loop] = self._new_client().register_script(TOKEN_BUCKET_LUA)

    async def close(self) -> None:
        script = self._scripts.pop(asyncio.get_running_loop(), None)
        if script is not None:
            await script.registered_client.aclose()

    async def _run(self, keys: list[str], args: list[int]) -> list[Any]:
        script = self._scripts.get(asyncio.get_running_loop())
        if script is not None:
            return await script(keys=keys, args=args)
        client = self._new_client()
        try:
            return await client.register_script(TOKEN_BUCKET_LUA)(keys=keys, args=args)
        finally:
            await client.aclose()

    async def take(self, workspace_id: int, limit: PlanLimit, cost: int = 1) -> Decision:
        try:
            allowed, tokens, wait = await self._run(
                [f"{KEY_PREFIX}{workspace_id}"], [limit.rate_per_second, limit.burst, cost]
            )
        except (redis.RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._last_warning > FAIL_OPEN_LOG_SECONDS:
                self._last_warning = now
                log.warning("rate limiter unavailable, letting requests through: %s", type(exc).__name__)
            return Decision(allowed=True, remaining=limit.burst, retry_after_seconds=0, limit=limit)
        retry_after = 0 if allowed else max(1, math.ceil(float(wait)))
        return Decision(
            allowed=bool(allowed), remaining=int(float(tokens)), retry_after_seconds=retry_after, limit=limit
        )
