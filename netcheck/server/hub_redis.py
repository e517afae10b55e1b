"""The session hub in Redis: several `netcheck serve` nodes share sessions through one Redis.

Imported only for `serve --hub redis://…` (redis-py is imported here, lazily for everyone else).
Per session `{sid}` (hash-tagged, so a Redis Cluster keeps a session's keys on one shard):

    netcheck:hub:{sid}:events           Stream: fields `leg` and `event` (the agent event's JSON).
                                        XADD MAXLEN ~ history_events; EXPIRE = the latest posting
                                        token's expiry (never shortened).
    netcheck:hub:{sid}:watchers         Sorted set of watcher leases (member: a random id, score: the
                                        lease's expiry); a lease is renewed at every keep-alive, so a
                                        node that dies frees its places within LEASE_KEEPALIVES × keepalive_s.
    netcheck:hub:{sid}:posts:{leg}:{n}  Posts of a leg in fixed window n of post_burst / post_rate_per_s
                                        seconds (INCR + EXPIRE): at most post_burst per window.

Event ids: Redis assigns the stream id `<ms>-<seq>` from its own clock, one clock for every node;
the SSE id is `ms × 1000 + seq`, which rises across nodes, node restarts and Redis restarts, and
stays below 2^53 (JavaScript reads it exactly). seq < 1000 holds because a session gets at most
2 legs × post_burst posts × max_events_per_post events (400 by default) per rate window.

Redis unreachable: posts get 503 (agents keep their events and retry), a watcher's stream ends
with a `: not live` comment and the watcher reconnects with Last-Event-ID.
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

from netcheck.server.hub_backends import WRITE_BATCH_BYTES, HubLimits, HubRefusal
from netcheck.server.hub_events import sse_frame, stamp

SEQ_PER_MS = 1000
COMMAND_TIMEOUT_S = 2.0
"""A post's Redis round trip: short, so an agent (3 s timeout) hears 503 rather than nothing."""
CONNECT_TIMEOUT_S = 1.0
COMMAND_CONNECTIONS = 64
READ_CONNECTIONS = 16384
"""One per watcher stream open on this node; Redis's own `maxclients` (10000 by default) is shared by all nodes."""
LEASE_KEEPALIVES = 3
READ_BATCH_EVENTS = 100
NOT_LIVE_FRAME = b": not live: the session store (Redis) is unreachable; reconnect with Last-Event-ID\n\n"
UNAVAILABLE = "session store unavailable (Redis): events are not accepted now; retry later"

_LEASE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""
"""Take a watcher's place if fewer than ARGV[2] unexpired leases are held: atomic across nodes."""


def sse_id(stream_id: bytes | str) -> int:
    """`<ms>-<seq>` → the SSE id `ms × 1000 + seq`."""
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return int(ms) * SEQ_PER_MS + int(seq)


def stream_id(event_id: int) -> str:
    """The SSE id back to the stream id it names (ids of the in-memory hub map to 1970: all is newer)."""
    return f"{event_id // SEQ_PER_MS}-{event_id % SEQ_PER_MS}"


def _key(session_id: str, what: str) -> str:
    return f"netcheck:hub:{{{session_id}}}:{what}"


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
        # a blocking read holds its connection for up to a keep-alive: one per open stream, own pool and timeout
        reads = redis.ConnectionPool.from_url(url, max_connections=READ_CONNECTIONS,
                                              socket_timeout=limits.keepalive_s + COMMAND_TIMEOUT_S, **common)
        self.reads = redis.Redis(connection_pool=reads, retry=Retry(NoBackoff(), 0))
        self._lease = self.commands.register_script(_LEASE)
        self.subscriptions: set[_RedisWatcher] = set()
        self.closing = asyncio.Event()

    async def ping(self) -> None:
        """Raises RedisError when Redis does not answer (`serve` warns at start and serves on)."""
        await self.commands.ping()

    def watcher_count(self, session_id: str) -> int:
        return sum(1 for watcher in self.subscriptions if watcher.session_id == session_id)

    async def admit_post(self, session_id: str, leg: str) -> None:
        window_s = self.limits.post_burst / self.limits.post_rate_per_s
        key = _key(session_id, f"posts:{leg}:{int(time.time() // window_s)}")
        try:
            async with self.commands.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, math.ceil(window_s) + 1)
                count, _ = await pipe.execute()
        except RedisError as error:
            raise HubRefusal(503, f"{UNAVAILABLE} ({type(error).__name__})", 5) from None
        if count > self.limits.post_burst:
            raise HubRefusal(429, f"too many posts: at most {self.limits.post_rate_per_s:g} per second per leg", 1)

    async def publish(self, session_id: str, leg: str, events: list[dict[str, Any]], until_s: float) -> int:
        if self.closing.is_set():
            raise HubRefusal(503, "server shutting down")
        key = _key(session_id, "events")
        ttl_s = max(1, math.ceil(until_s - time.time()))
        try:
            async with self.commands.pipeline(transaction=True) as pipe:  # all the post's events or none
                for event in events:
                    pipe.xadd(key, {"leg": leg, "event": json.dumps(event, separators=(",", ":"))},
                              maxlen=self.limits.history_events, approximate=True)
                pipe.expire(key, ttl_s, nx=True)
                pipe.expire(key, ttl_s, gt=True)
                results = await pipe.execute()
        except RedisError as error:
            raise HubRefusal(503, f"{UNAVAILABLE} ({type(error).__name__})", 5) from None
        return sse_id(results[len(events) - 1])

    async def subscribe(self, session_id: str, last_event_id: int | None,
                        transport: asyncio.BaseTransport | None) -> _RedisWatcher:
        if self.closing.is_set():
            raise HubRefusal(503, "server shutting down")
        lease = secrets.token_hex(8)
        events_key = _key(session_id, "events")
        try:
            taken = await self._lease(keys=[_key(session_id, "watchers")], args=[
                time.time(), self.limits.max_watchers, time.time() + self._lease_s, lease,
                math.ceil(self._lease_s) + 1])
            if not taken:
                raise HubRefusal(429, f"too many watchers of this session (at most {self.limits.max_watchers})")
            after = "$"
            if last_event_id is not None:
                newest = await self.commands.xrevrange(events_key, count=1)
                held_id = sse_id(newest[0][0]) if newest else 0
                # newer than anything held: the stream was lost (expired, Redis without persistence): all
                after = stream_id(last_event_id) if last_event_id <= held_id else "0-0"
            if after == "$":  # "$" only means "new from now" in a blocking read: pin it to an id now
                newest = await self.commands.xrevrange(events_key, count=1)
                after = newest[0][0].decode() if newest else "0-0"
        except RedisError as error:
            raise HubRefusal(503, f"{UNAVAILABLE} ({type(error).__name__})", 5) from None
        watcher = _RedisWatcher(self, session_id, lease, after)
        self.subscriptions.add(watcher)
        return watcher

    async def close(self) -> None:
        self.closing.set()
        for _ in range(100):  # handlers notice `closing` at once and release their leases
            if not self.subscriptions:
                break
            await asyncio.sleep(0.01)
        for client in (self.reads, self.commands):
            await client.aclose()
            await client.connection_pool.disconnect()  # a pool passed in is not closed with its client

    @property
    def _lease_s(self) -> float:
        return LEASE_KEEPALIVES * self.limits.keepalive_s


class _RedisWatcher:
    """Reads the session's stream after the last id it delivered: replay and live are the same read."""

    def __init__(self, backend: RedisBackend, session_id: str, lease: str, after: str) -> None:
        self.backend = backend
        self.session_id = session_id
        self.lease = lease
        self.after = after
        self.ended = False
        self.fell_behind = False
        """Never set here: a slow reader only lags in the stream (capped by MAXLEN); the hub's write timeout cuts it."""
        self.lease_renew_s = time.monotonic() + backend.limits.keepalive_s

    async def next_frames(self, timeout_s: float) -> list[bytes] | None:
        if self.ended or self.backend.closing.is_set():
            return None
        key = _key(self.session_id, "events")
        try:
            if time.monotonic() >= self.lease_renew_s:
                await self.backend.commands.zadd(_key(self.session_id, "watchers"),
                                                 {self.lease: time.time() + self.backend._lease_s})
                self.lease_renew_s = time.monotonic() + self.backend.limits.keepalive_s
            block_ms = int(timeout_s * 1000)
            if block_ms <= 0:
                read = await self.backend.commands.xread({key: self.after}, count=READ_BATCH_EVENTS)
            else:
                reading = asyncio.ensure_future(
                    self.backend.reads.xread({key: self.after}, count=READ_BATCH_EVENTS, block=block_ms))
                closing = asyncio.ensure_future(self.backend.closing.wait())
                await asyncio.wait({reading, closing}, return_when=asyncio.FIRST_COMPLETED)
                closing.cancel()
                if not reading.done():
                    reading.cancel()
                    return None
                read = reading.result()
        except RedisError:
            self.ended = True
            return [NOT_LIVE_FRAME]
        frames: list[bytes] = []
        size = 0
        for _key_name, entries in read or []:
            for entry_id, fields in entries:
                self.after = entry_id.decode()
                event = json.loads(fields[b"event"])
                frame = sse_frame(stamp(event, sse_id(entry_id), self.session_id, fields[b"leg"].decode()))
                frames.append(frame)
                size += len(frame)
                if size >= WRITE_BATCH_BYTES:
                    return frames
        return frames

    async def close(self) -> None:
        self.backend.subscriptions.discard(self)
        try:
            await self.backend.commands.zrem(_key(self.session_id, "watchers"), self.lease)
        except RedisError:
            pass  # Redis is down: the lease expires with it (LEASE_KEEPALIVES × keepalive_s)
