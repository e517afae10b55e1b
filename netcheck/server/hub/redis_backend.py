"""The session hub in Redis: several `netcheck serve` nodes share sessions through one Redis.

Imported only for `serve --hub redis://…` (redis-py is imported here, lazily for everyone else).
Per session `{sid}` (hash-tagged, so a Redis Cluster keeps a session's keys on one shard):

    netcheck:hub:{sid}:events           Stream: fields `leg` and `event` (the agent event's JSON).
                                        XADD MAXLEN ~ history_events; EXPIRE = the latest posting
                                        token's expiry (never shortened).
    netcheck:hub:{sid}:watchers         Sorted set of watcher leases (redis_leases.py): renewed at every
                                        keep-alive, so a node that dies frees its places within the
                                        lease time (lease_keepalives × keepalive_s), and so does the set.
    netcheck:hub:{sid}:posts:{leg}      Hash: the leg's token bucket (`t` tokens, `s` when last counted),
                                        expiring once it would be full again.

A post is one Redis round trip: a script takes a token from its leg's bucket and, when admitted,
XADDs its events and extends the stream's expiry (atomic: all the post's events or none). The bucket
is the server's one limiter (rate.py TokenBuckets: the same arithmetic, line for line, a test holds
them to the same answers) with its state in Redis, so the rate holds across nodes. Before the body
is read, each node also holds a leg to the same rate locally (a TokenBuckets, no Redis), so a flood
of posts costs this node neither Redis round trips nor parsing.

Event ids: Redis assigns the stream id `<ms>-<seq>` from its own clock, one clock for every node;
the SSE id is `ms × 1000 + seq`, which rises across nodes, node restarts and Redis restarts, and
stays below 2^53 (JavaScript reads it exactly). seq < 1000 holds because a session gets at most
2 legs × post_burst posts × max_events_per_post events (400 by default) per rate window.

Reading (redis_reader.py): one blocking XREAD per node (one Redis connection) over every stream
that this node's watchers watch, fanned out to them in memory; each watcher first reads what it
missed with XRANGE. The reader is supervised: restarted and logged after any error. One blocking read per
watcher (the first design) cost ≈ 18 Redis commands per post and one connection per watcher
(BENCHMARKS.md, "Session hub capacity"). All keys of one XREAD must share a shard, so with Redis
Cluster this needs one reader per shard: not built, one Redis (with replicas) is the deployment.

Redis unreachable: posts get 503 (agents keep their events and retry), a watcher's stream ends
with a `: not live` comment and the watcher reconnects with Last-Event-ID. A subscribe that fails
after taking its lease gives the lease back (or it expires within the lease time).
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from typing import Any

import redis.asyncio as redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from netcheck.server.hub.backend import HubLimits
from netcheck.server.hub.redis_ids import UNAVAILABLE, id_pair, id_text, key, sse_id, stream_id
from netcheck.server.hub.redis_leases import Leases
from netcheck.server.hub.redis_reader import NodeReader, RedisWatcher
from netcheck.server.rate import TokenBuckets, retry_after_s
from netcheck.server.refusal import Refusal

__all__ = ["RedisBackend", "sse_id", "stream_id"]

COMMAND_TIMEOUT_S = 2.0
"""A post's Redis round trip: short, so an agent (3 s timeout) hears 503 rather than nothing."""
CONNECT_TIMEOUT_S = 1.0
COMMAND_CONNECTIONS = 64

_PUBLISH = """#!lua
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 's')
local tokens = tonumber(state[1]) or burst
local last = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0.0, now - last) * rate)
local admitted = tokens >= 1.0
if admitted then tokens = tokens - 1.0 end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 's', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if not admitted then return {'wait', string.format('%.17g', (1.0 - tokens) / rate)} end
local id = ''
for i = 8, #ARGV do
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'leg', ARGV[7], 'event', ARGV[i])
end
redis.call('EXPIRE', KEYS[2], ARGV[6], 'NX')
redis.call('EXPIRE', KEYS[2], ARGV[6], 'GT')
return id
"""
"""Take a token from the leg's bucket KEYS[1] (ARGV[1] per second up to ARGV[2], at ARGV[3] unix s;
TokenBuckets.take line for line; the bucket expires ARGV[4] ms on, when it would be full again) and,
when admitted, append the post's events (ARGV[8…], leg ARGV[7]) to the stream KEYS[2] (MAXLEN ~
ARGV[5], expiry ARGV[6] never shortened): the last event's id, or {'wait', seconds} when refused."""


class RedisBackend:
    def __init__(self, url: str, password: str | None, limits: HubLimits = HubLimits()) -> None:
        self.limits = limits
        common: dict[str, Any] = {"password": password, "socket_connect_timeout": CONNECT_TIMEOUT_S,
                                  "retry": Retry(NoBackoff(), 0), "health_check_interval": 0}
        # commands share a few connections; a burst waits for one (up to the command timeout) instead of failing
        commands = redis.BlockingConnectionPool.from_url(url, max_connections=COMMAND_CONNECTIONS,
                                                         timeout=COMMAND_TIMEOUT_S, socket_timeout=COMMAND_TIMEOUT_S,
                                                         **common)
        self.commands = redis.Redis(connection_pool=commands, retry=Retry(NoBackoff(), 0))
        # the node's one blocking read holds its own connection for up to a keep-alive
        reads = redis.ConnectionPool.from_url(url, max_connections=1,
                                              socket_timeout=limits.keepalive_s + COMMAND_TIMEOUT_S, **common)
        self.reads = redis.Redis(connection_pool=reads, retry=Retry(NoBackoff(), 0))
        self.leases = Leases(self.commands, limits)
        self._publish = self.commands.register_script(_PUBLISH)
        self._local_posts = TokenBuckets(limits.post_rate_per_s, limits.post_burst)
        self.subscriptions: set[RedisWatcher] = set()
        self.closing = asyncio.Event()
        self.reader = NodeReader(self)

    async def ping(self) -> None:
        """Raises RedisError when Redis does not answer (`serve` warns at start and serves on)."""
        await self.commands.ping()

    def watcher_count(self, session_id: str) -> int:
        return sum(1 for watcher in self.subscriptions if watcher.session_id == session_id)

    async def admit_post(self, session_id: str, leg: str) -> None:
        """This node's share of the check, before the body is read; `publish` counts across nodes."""
        wait_s = self._local_posts.take(f"{session_id}/{leg}", time.monotonic())
        if wait_s:
            raise Refusal(429, "rate", self._too_many_posts, retry_after_s(wait_s))

    async def publish(self, session_id: str, leg: str, events: list[dict[str, Any]], until_s: float) -> int:
        if self.closing.is_set():
            raise Refusal(503, "unavailable", "server shutting down")
        try:
            last_id, wait_s = await self.post(session_id, leg, events, until_s, time.time())
        except RedisError as error:
            raise Refusal(503, "unavailable", f"{UNAVAILABLE} ({type(error).__name__})", 5) from None
        if wait_s:
            raise Refusal(429, "rate", self._too_many_posts, retry_after_s(wait_s))
        return sse_id(last_id)

    async def post(self, session_id: str, leg: str, events: list[dict[str, Any]], until_s: float,
                   now_s: float) -> tuple[str, float]:
        """One post across nodes at `now_s` (unix s): (the last event's id, 0.0) when its leg's bucket
        admits it, else ("", the seconds until it would). Raises RedisError."""
        refill_ms = math.ceil((self.limits.post_burst / self.limits.post_rate_per_s + 1.0) * 1000)
        answer: Any = await self._publish(keys=[key(session_id, f"posts:{leg}"), key(session_id, "events")], args=[
            repr(float(self.limits.post_rate_per_s)), repr(float(self.limits.post_burst)), repr(now_s), refill_ms,
            self.limits.history_events, max(1, math.ceil(until_s - now_s)), leg,
            *(json.dumps(event, separators=(",", ":")) for event in events)])
        if isinstance(answer, list):
            return "", float(answer[1])
        return answer.decode() if isinstance(answer, bytes) else str(answer), 0.0

    @property
    def _too_many_posts(self) -> str:
        return f"too many posts: at most {self.limits.post_rate_per_s:g} per second per leg"

    async def subscribe(self, session_id: str, last_event_id: int | None,
                        transport: asyncio.BaseTransport | None) -> RedisWatcher:
        if self.closing.is_set():
            raise Refusal(503, "unavailable", "server shutting down")
        lease = secrets.token_hex(8)
        try:
            if not await self.leases.hold(session_id, lease):
                raise Refusal(429, "busy", f"too many watchers of this session (at most {self.limits.max_watchers})")
        except RedisError as error:
            raise Refusal(503, "unavailable", f"{UNAVAILABLE} ({type(error).__name__})", 5) from None
        try:
            return await self._join(session_id, lease, last_event_id)
        except BaseException:  # Redis failed, or the subscriber left meanwhile: the place is not kept
            await asyncio.shield(self.leases.release(session_id, lease))
            raise

    async def _join(self, session_id: str, lease: str, last_event_id: int | None) -> RedisWatcher:
        """The watcher holding `lease`, joined to the node's reader; Refusal (503) when Redis fails."""
        try:
            newest = await self.commands.xrevrange(key(session_id, "events"), count=1)
        except RedisError as error:
            raise Refusal(503, "unavailable", f"{UNAVAILABLE} ({type(error).__name__})", 5) from None
        newest_id = id_pair(newest[0][0]) if newest else (0, 0)
        after = newest_id  # live events only
        if last_event_id is not None:
            # newer than anything held: the stream was lost (expired, Redis without persistence): all
            after = id_pair(stream_id(last_event_id)) if last_event_id <= sse_id(id_text(newest_id)) else (0, 0)
        watcher = RedisWatcher(self, session_id, lease, after)
        self.subscriptions.add(watcher)
        try:
            await self.reader.join(watcher, newest_id)
        except RedisError as error:
            self.subscriptions.discard(watcher)
            raise Refusal(503, "unavailable", f"{UNAVAILABLE} ({type(error).__name__})", 5) from None
        return watcher

    async def close(self) -> None:
        self.closing.set()
        self.reader.stop()
        for _ in range(100):  # handlers notice `closing` at once and release their leases
            if not self.subscriptions:
                break
            await asyncio.sleep(0.01)
        for client in (self.reads, self.commands):
            await client.aclose()
            await client.connection_pool.disconnect()  # a pool passed in is not closed with its client
