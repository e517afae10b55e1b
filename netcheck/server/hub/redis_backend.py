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

A post is one Redis round trip: a script counts it in its leg's window and, when admitted, XADDs its
events and extends the stream's expiry (atomic: all the post's events or none). Before the body is
read, each node also holds a leg to the same rate locally (no Redis), so a flood of posts costs this
node neither Redis round trips nor parsing.

Event ids: Redis assigns the stream id `<ms>-<seq>` from its own clock, one clock for every node;
the SSE id is `ms × 1000 + seq`, which rises across nodes, node restarts and Redis restarts, and
stays below 2^53 (JavaScript reads it exactly). seq < 1000 holds because a session gets at most
2 legs × post_burst posts × max_events_per_post events (400 by default) per rate window.

Reading: one blocking XREAD per node (`_NodeReader`, one Redis connection) over every stream that
this node's watchers watch, fanned out to them in memory. A watcher first reads what it missed with
XRANGE (a replay after Last-Event-ID, or what the reader passed before it joined), then takes the
reader's entries, skipping ids it already sent. A new session on the node wakes the blocked read by
an XADD to the node's own wake stream (`netcheck:hub:node:<id>:wake`). One blocking read per
watcher (the first design) cost ≈ 18 Redis commands per post and one connection per watcher
(BENCHMARKS.md, "Session hub capacity"). All keys of one XREAD must share a shard, so with Redis
Cluster this needs one reader per shard: not built, one Redis (with replicas) is the deployment.

Redis unreachable: posts get 503 (agents keep their events and retry), a watcher's stream ends
with a `: not live` comment and the watcher reconnects with Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from collections import deque
from typing import Any

import redis.asyncio as redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from netcheck.server.hub.backend import WRITE_BATCH_BYTES, HubLimits
from netcheck.server.hub.events import sse_frame, stamp
from netcheck.server.rate import TokenBuckets
from netcheck.server.refusal import Refusal

SEQ_PER_MS = 1000
COMMAND_TIMEOUT_S = 2.0
"""A post's Redis round trip: short, so an agent (3 s timeout) hears 503 rather than nothing."""
CONNECT_TIMEOUT_S = 1.0
COMMAND_CONNECTIONS = 64
LEASE_KEEPALIVES = 3
READ_BATCH_EVENTS = 100
"""Entries per stream and read: a replay is read in pages of this many."""
READER_RETRY_S = (0.5, 5.0)
"""The node's reader waits this long (doubling up to the second) before reading again after an error."""
WAKE_KEY_TTL_S = 3600
READ_PAUSE_PER_SESSION_S = 100e-6
READ_PAUSE_MAX_S = 0.25
"""Between two reads the node's reader waits 100 µs per session it reads (≤ 0.25 s), so that entries
arriving meanwhile come in one read: each read re-sends every session's key and position, ≈ 7 µs
of the node's CPU per session (profiled at 1,000 sessions: re-issued at once, the reads took half
the node's core). The first event after a quiet spell is not delayed."""
NOT_LIVE_FRAME = b": not live: the session store (Redis) is unreachable; reconnect with Last-Event-ID\n\n"
UNAVAILABLE = "session store unavailable (Redis): events are not accepted now; retry later"

_PUBLISH = """#!lua
local posts = redis.call('INCR', KEYS[1])
if posts == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if posts > tonumber(ARGV[1]) then return false end
local id
for i = 6, #ARGV do
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'leg', ARGV[5], 'event', ARGV[i])
end
redis.call('EXPIRE', KEYS[2], ARGV[4], 'NX')
redis.call('EXPIRE', KEYS[2], ARGV[4], 'GT')
return id
"""
"""Admit a post in its leg's window (KEYS[1]; ARGV[1] posts at most, ARGV[2] the window's TTL) and
append its events (ARGV[6…], leg ARGV[5]) to the stream KEYS[2] (MAXLEN ~ ARGV[3], expiry ARGV[4]
never shortened); the last event's id, or nil when the leg is over its rate."""

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


IdPair = tuple[int, int]
"""A stream id `<ms>-<seq>` as numbers, which compare in stream order."""


def _id_pair(entry_id: bytes | str) -> IdPair:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _id_text(pair: IdPair) -> str:
    return f"{pair[0]}-{pair[1]}"


def _frame(session_id: str, entry_id: bytes, fields: dict[bytes, bytes]) -> bytes | None:
    """The entry as an SSE frame; None for an entry no node wrote (skipped rather than stopping the reader)."""
    try:
        event = json.loads(fields[b"event"])
        return sse_frame(stamp(event, sse_id(entry_id), session_id, fields[b"leg"].decode()))
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


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
        self._lease = self.commands.register_script(_LEASE)
        self._publish = self.commands.register_script(_PUBLISH)
        self._local_posts = TokenBuckets(limits.post_rate_per_s, limits.post_burst)
        self.subscriptions: set[_RedisWatcher] = set()
        self.closing = asyncio.Event()
        self.reader = _NodeReader(self)

    async def ping(self) -> None:
        """Raises RedisError when Redis does not answer (`serve` warns at start and serves on)."""
        await self.commands.ping()

    def watcher_count(self, session_id: str) -> int:
        return sum(1 for watcher in self.subscriptions if watcher.session_id == session_id)

    async def admit_post(self, session_id: str, leg: str) -> None:
        """This node's share of the check, before the body is read; `publish` counts across nodes."""
        if not self._local_posts.allow(f"{session_id}/{leg}", time.monotonic()):
            raise Refusal(429, "rate", self._too_many_posts, 1)

    async def publish(self, session_id: str, leg: str, events: list[dict[str, Any]], until_s: float) -> int:
        if self.closing.is_set():
            raise Refusal(503, "unavailable", "server shutting down")
        window_s = self.limits.post_burst / self.limits.post_rate_per_s
        posts_key = _key(session_id, f"posts:{leg}:{int(time.time() // window_s)}")
        try:
            last_id = await self._publish(keys=[posts_key, _key(session_id, "events")], args=[
                self.limits.post_burst, math.ceil(window_s) + 1, self.limits.history_events,
                max(1, math.ceil(until_s - time.time())), leg,
                *(json.dumps(event, separators=(",", ":")) for event in events)])
        except RedisError as error:
            raise Refusal(503, "unavailable", f"{UNAVAILABLE} ({type(error).__name__})", 5) from None
        if last_id is None:
            raise Refusal(429, "rate", self._too_many_posts, 1)
        return sse_id(last_id)

    @property
    def _too_many_posts(self) -> str:
        return f"too many posts: at most {self.limits.post_rate_per_s:g} per second per leg"

    async def subscribe(self, session_id: str, last_event_id: int | None,
                        transport: asyncio.BaseTransport | None) -> _RedisWatcher:
        if self.closing.is_set():
            raise Refusal(503, "unavailable", "server shutting down")
        lease = secrets.token_hex(8)
        events_key = _key(session_id, "events")
        try:
            taken = await self._lease(keys=[_key(session_id, "watchers")], args=[
                time.time(), self.limits.max_watchers, time.time() + self._lease_s, lease,
                math.ceil(self._lease_s) + 1])
            if not taken:
                raise Refusal(429, "busy", f"too many watchers of this session (at most {self.limits.max_watchers})")
            newest = await self.commands.xrevrange(events_key, count=1)
        except RedisError as error:
            raise Refusal(503, "unavailable", f"{UNAVAILABLE} ({type(error).__name__})", 5) from None
        newest_id = _id_pair(newest[0][0]) if newest else (0, 0)
        after = newest_id  # live events only
        if last_event_id is not None:
            # newer than anything held: the stream was lost (expired, Redis without persistence): all
            after = _id_pair(stream_id(last_event_id)) if last_event_id <= sse_id(_id_text(newest_id)) else (0, 0)
        watcher = _RedisWatcher(self, session_id, lease, after)
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

    @property
    def _lease_s(self) -> float:
        return LEASE_KEEPALIVES * self.limits.keepalive_s


class _NodeReader:
    """The node's one blocking XREAD over every stream its watchers watch; hands each entry to them.

    `read_after[stream key]` is the last entry handed out (or, for a session new on this node, the
    newest entry when it joined): the next read starts there. Kept as the read's own arguments
    (text ids) so that a read does not rebuild them. The reader runs while the node has
    watchers and ends the streams of all of them ("not live") when Redis fails.
    """

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend
        self.wake_key = f"netcheck:hub:node:{secrets.token_hex(8)}:wake"
        self.wake_after = "0-0"
        self.wake_pending = False
        self.read_after: dict[str, str] = {}
        """Stream key → the id the next read starts after."""
        self.watchers: dict[str, set[_RedisWatcher]] = {}
        self.task: asyncio.Task[None] | None = None

    async def join(self, watcher: _RedisWatcher, newest_id: IdPair) -> None:
        """From now on the watcher is handed every entry read; what came before, it reads itself.

        `newest_id`: the session's newest entry, read before joining. Raises RedisError when the
        reader cannot be woken to add a new session (the subscriber gets 503).
        """
        session_id = watcher.session_id
        self.watchers.setdefault(session_id, set()).add(watcher)
        key = _key(session_id, "events")
        new_session = key not in self.read_after
        if new_session:
            self.read_after[key] = _id_text(newest_id)
        watcher.catching_up = watcher.after < _id_pair(self.read_after[key])
        if self.task is None:
            self.task = asyncio.create_task(self._run())
        elif new_session and not self.wake_pending:
            self.wake_pending = True  # cleared when the reader next lists its streams, which includes this one
            try:
                async with self.backend.commands.pipeline(transaction=False) as pipe:
                    pipe.xadd(self.wake_key, {"w": 1}, maxlen=1)
                    pipe.expire(self.wake_key, WAKE_KEY_TTL_S)
                    await pipe.execute()
            except RedisError:
                self.wake_pending = False
                self.leave(watcher)
                raise

    def leave(self, watcher: _RedisWatcher) -> None:
        watchers = self.watchers.get(watcher.session_id)
        if watchers is None:
            return
        watchers.discard(watcher)
        if not watchers:
            del self.watchers[watcher.session_id]
            del self.read_after[_key(watcher.session_id, "events")]

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        for watchers in self.watchers.values():
            for watcher in watchers:
                watcher.wake()

    async def _run(self) -> None:
        retry_s = READER_RETRY_S[0]
        block_ms = int(self.backend.limits.keepalive_s * 1000)
        loop = asyncio.get_running_loop()
        next_read_s = loop.time()
        while self.watchers and not self.backend.closing.is_set():
            if loop.time() < next_read_s:
                await asyncio.sleep(next_read_s - loop.time())
            next_read_s = loop.time() + min(READ_PAUSE_MAX_S, READ_PAUSE_PER_SESSION_S * len(self.read_after))
            self.wake_pending = False
            streams = {self.wake_key: self.wake_after, **self.read_after}
            try:
                read = await self.backend.reads.xread(streams, count=READ_BATCH_EVENTS, block=block_ms)
            except RedisError:
                self._end_all_streams()
                await asyncio.sleep(retry_s)
                retry_s = min(2 * retry_s, READER_RETRY_S[1])
                continue
            retry_s = READER_RETRY_S[0]
            for key, entries in read or []:
                self._hand_out(key.decode(), entries)
        self.task = None

    def _hand_out(self, key: str, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        if key == self.wake_key:
            self.wake_after = entries[-1][0].decode()
            return
        session_id = key[key.index("{") + 1:key.rindex("}")]
        watchers = self.watchers.get(session_id)
        if watchers is None:  # its last watcher left during the read
            return
        for entry_id, fields in entries:
            pair = _id_pair(entry_id)
            if pair <= _id_pair(self.read_after[key]):
                continue
            self.read_after[key] = entry_id.decode()
            frame = _frame(session_id, entry_id, fields)
            if frame is None:
                continue
            for watcher in watchers:
                watcher.hand(pair, frame)

    def _end_all_streams(self) -> None:
        for watchers in self.watchers.values():
            for watcher in watchers:
                watcher.not_live = True
                watcher.wake()


class _RedisWatcher:
    """One watcher's stream: what it missed (XRANGE), then the node reader's entries, in order, once."""

    def __init__(self, backend: RedisBackend, session_id: str, lease: str, after: IdPair) -> None:
        self.backend = backend
        self.session_id = session_id
        self.lease = lease
        self.after = after
        """The last entry sent to this watcher."""
        self.catching_up = False
        """Entries after `after` may be in Redis only: read them before the inbox."""
        self.inbox: deque[tuple[IdPair, bytes]] = deque()
        self.not_live = False
        self.ended = False
        self.fell_behind = False
        """Never set here: a slow watcher goes back to reading from Redis (capped by MAXLEN); the hub's write timeout cuts it."""
        self.lease_renew_s = time.monotonic() + backend.limits.keepalive_s
        self._arrived: asyncio.Future[None] | None = None

    def hand(self, pair: IdPair, frame: bytes) -> None:
        """An entry from the node's reader."""
        if len(self.inbox) >= self.backend.limits.watcher_queue_events:
            self.inbox.clear()  # it does not keep up: it reads from Redis again, where the entries are
            self.catching_up = True
        self.inbox.append((pair, frame))
        self.wake()

    def wake(self) -> None:
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)

    async def next_frames(self, timeout_s: float) -> list[bytes] | None:
        if self.ended or self.backend.closing.is_set():
            return None
        try:
            if time.monotonic() >= self.lease_renew_s:
                await self.backend.commands.zadd(_key(self.session_id, "watchers"),
                                                 {self.lease: time.time() + self.backend._lease_s})
                self.lease_renew_s = time.monotonic() + self.backend.limits.keepalive_s
            if self.catching_up:
                missed = await self._read_missed()
                if missed:
                    return missed
        except RedisError:
            self.ended = True
            return [NOT_LIVE_FRAME]
        if not self.inbox and not self.not_live and timeout_s > 0:
            self._arrived = asyncio.get_running_loop().create_future()
            await asyncio.wait({self._arrived}, timeout=timeout_s)
            self._arrived = None
            if self.backend.closing.is_set():
                return None
        frames: list[bytes] = []
        size = 0
        while self.inbox and size < WRITE_BATCH_BYTES:
            pair, frame = self.inbox.popleft()
            if pair > self.after:
                self.after = pair
                frames.append(frame)
                size += len(frame)
        if self.not_live and not self.inbox:
            self.ended = True
            frames.append(NOT_LIVE_FRAME)
        return frames

    async def _read_missed(self) -> list[bytes]:
        """The next page of entries after `after` held in Redis; the catch-up ends with a short page."""
        entries = await self.backend.commands.xrange(_key(self.session_id, "events"), min=f"({_id_text(self.after)}",
                                                     max="+", count=READ_BATCH_EVENTS)
        frames: list[bytes] = []
        size = 0
        for entry_id, fields in entries:
            if size >= WRITE_BATCH_BYTES:
                return frames  # the rest in the next call, still catching up
            frame = _frame(self.session_id, entry_id, fields)
            self.after = _id_pair(entry_id)
            if frame is not None:
                frames.append(frame)
                size += len(frame)
        self.catching_up = len(entries) == READ_BATCH_EVENTS
        return frames

    async def close(self) -> None:
        self.backend.subscriptions.discard(self)
        self.backend.reader.leave(self)
        try:
            await self.backend.commands.zrem(_key(self.session_id, "watchers"), self.lease)
        except RedisError:
            pass  # Redis is down: the lease expires with it (LEASE_KEEPALIVES × keepalive_s)
