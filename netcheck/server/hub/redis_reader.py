"""The Redis hub's reading side on one node: one blocking XREAD for all its watchers, and each watcher.

`NodeReader`: one blocking XREAD (one Redis connection) over every stream that this node's watchers
watch, fanned out to them in memory. A new session on the node wakes the blocked read by an XADD to
the node's own wake stream (`netcheck:hub:node:<id>:wake`). The reader is supervised: a Redis error
ends every stream as "not live" (watchers reconnect); any other error is logged, every watcher reads
again from Redis after what it was sent, and the reader starts again, so none of them is left with
keep-alives and no events.

`RedisWatcher`: first what it missed (XRANGE: a replay after Last-Event-ID, or what the reader passed
before it joined), then the reader's entries, skipping ids it already sent. One that does not keep up
reads from Redis again; one whose next entry Redis has already trimmed (MAXLEN) has lost events and
is cut (`fell_behind`), as the in-memory hub cuts one.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

from netcheck.server.hub.backend import WRITE_BATCH_BYTES, HubLimits
from netcheck.server.hub.redis_ids import NOT_LIVE_FRAME, IdPair, frame, id_pair, id_text, key
from netcheck.server.hub.redis_leases import Leases

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
LEASE_LOST_FRAME = b": lease lost: this session's watcher places are taken; reconnect later\n\n"


class Host(Protocol):
    """What the reader and its watchers use of the node's backend (redis_backend.RedisBackend)."""

    limits: HubLimits
    commands: redis.Redis
    reads: redis.Redis
    leases: Leases
    closing: asyncio.Event
    subscriptions: set[RedisWatcher]
    reader: NodeReader


def warn_on_stderr(message: str) -> None:
    print(f"netcheck: warning: {message}", file=sys.stderr, flush=True)


class NodeReader:
    """The node's one blocking XREAD over every stream its watchers watch; hands each entry to them.

    `read_after[stream key]` is the last entry handed out (or, for a session new on this node, the
    newest entry when it joined): the next read starts there. Kept as the read's own arguments
    (text ids) so that a read does not rebuild them. The reader runs while the node has watchers.
    """

    def __init__(self, backend: Host, warn: Callable[[str], None] = warn_on_stderr) -> None:
        self.backend = backend
        self.warn = warn
        self.wake_key = f"netcheck:hub:node:{secrets.token_hex(8)}:wake"
        self.wake_after = "0-0"
        self.wake_pending = False
        self.read_after: dict[str, str] = {}
        """Stream key → the id the next read starts after."""
        self.watchers: dict[str, set[RedisWatcher]] = {}
        self.task: asyncio.Task[None] | None = None
        self.restarts = 0
        self.inject_fault: Callable[[], None] | None = None
        """Fault injection: called after each read, before its entries are handed out; whatever it
        raises, the reader meets as its own error (tests raise here to show the supervision)."""

    async def join(self, watcher: RedisWatcher, newest_id: IdPair) -> None:
        """From now on the watcher is handed every entry read; what came before, it reads itself.

        `newest_id`: the session's newest entry, read before joining. Raises RedisError when the
        reader cannot be woken to add a new session (the watcher has left again: the subscriber gets 503).
        """
        session_id = watcher.session_id
        self.watchers.setdefault(session_id, set()).add(watcher)
        stream = key(session_id, "events")
        new_session = stream not in self.read_after
        if new_session:
            self.read_after[stream] = id_text(newest_id)
        watcher.catching_up = watcher.after < id_pair(self.read_after[stream])
        if self.task is None:
            self.task = asyncio.create_task(self._supervise())
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

    def leave(self, watcher: RedisWatcher) -> None:
        watchers = self.watchers.get(watcher.session_id)
        if watchers is None or watcher not in watchers:
            return
        watchers.discard(watcher)
        if not watchers:
            del self.watchers[watcher.session_id]
            del self.read_after[key(watcher.session_id, "events")]

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        for watchers in self.watchers.values():
            for watcher in watchers:
                watcher.wake()

    async def _supervise(self) -> None:
        """Runs the reader until the node has no watchers; starts it again after any error but Redis's."""
        retry_s = READER_RETRY_S[0]
        try:
            while True:
                try:
                    await self._run()
                    return
                except Exception as error:  # noqa: BLE001 — a reader that dies leaves watchers without events
                    self.restarts += 1
                    self.warn(f"the session hub's Redis reader failed ({type(error).__name__}: {error}); "
                              f"its {sum(map(len, self.watchers.values()))} watchers read again from Redis, "
                              f"reader restarted in {retry_s:g} s")
                    self._all_catch_up()
                    await asyncio.sleep(retry_s)
                    retry_s = min(2 * retry_s, READER_RETRY_S[1])
        finally:
            self.task = None

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
            if self.inject_fault is not None:
                self.inject_fault()
            for stream, entries in read or []:
                self._hand_out(stream.decode(), entries)

    def _hand_out(self, stream: str, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        if stream == self.wake_key:
            self.wake_after = entries[-1][0].decode()
            return
        session_id = stream[stream.index("{") + 1:stream.rindex("}")]
        watchers = self.watchers.get(session_id)
        if watchers is None:  # its last watcher left during the read
            return
        for entry_id, fields in entries:
            pair = id_pair(entry_id)
            if pair <= id_pair(self.read_after[stream]):
                continue
            self.read_after[stream] = entry_id.decode()
            entry_frame = frame(session_id, entry_id, fields)
            if entry_frame is None:
                continue
            for watcher in watchers:
                watcher.hand(pair, entry_frame)

    def _all_catch_up(self) -> None:
        """After a failed hand-out: entries read may have reached some watchers, or none; each reads
        from Redis after the last one it sent (nothing twice, nothing lost)."""
        for watchers in self.watchers.values():
            for watcher in watchers:
                watcher.catching_up = True
                watcher.wake()

    def _end_all_streams(self) -> None:
        for watchers in self.watchers.values():
            for watcher in watchers:
                watcher.not_live = True
                watcher.wake()


class RedisWatcher:
    """One watcher's stream: what it missed (XRANGE), then the node reader's entries, in order, once."""

    def __init__(self, backend: Host, session_id: str, lease: str, after: IdPair) -> None:
        self.backend = backend
        self.session_id = session_id
        self.lease = lease
        self.after = after
        """The last entry sent to this watcher."""
        self.catching_up = False
        """Entries after `after` may be in Redis only: read them before the inbox."""
        self.must_find: IdPair | None = None
        """An entry this watcher was handed and dropped unsent: its catch-up must still find it in Redis."""
        self.inbox: deque[tuple[IdPair, bytes]] = deque()
        self.not_live = False
        self.ended = False
        self.fell_behind = False
        """Its next entry was trimmed from Redis (MAXLEN) before it read it: cut, as the hub cuts one that lost events."""
        self.lease_renew_s = time.monotonic() + backend.limits.keepalive_s
        self._arrived: asyncio.Future[None] | None = None

    def hand(self, pair: IdPair, entry_frame: bytes) -> None:
        """An entry from the node's reader."""
        if len(self.inbox) >= self.backend.limits.watcher_queue_events:
            unsent = [held for held, _ in self.inbox if held > self.after]
            if unsent and self.must_find is None:
                self.must_find = unsent[0]
            self.inbox.clear()  # it does not keep up: it reads from Redis again, where the entries are
            self.catching_up = True
        self.inbox.append((pair, entry_frame))
        self.wake()

    def wake(self) -> None:
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)

    async def next_frames(self, timeout_s: float) -> list[bytes] | None:
        if self.ended or self.backend.closing.is_set():
            return None
        try:
            if time.monotonic() >= self.lease_renew_s:
                if not await self.backend.leases.hold(self.session_id, self.lease):
                    self.ended = True
                    return [LEASE_LOST_FRAME]
                self.lease_renew_s = time.monotonic() + self.backend.limits.keepalive_s
            if self.catching_up:
                missed = await self._read_missed()
                if self.fell_behind:
                    return None
                if missed:
                    return missed
        except RedisError:
            self.ended = True
            return [NOT_LIVE_FRAME]
        if not self.inbox and not self.not_live and not self.catching_up and timeout_s > 0:
            self._arrived = asyncio.get_running_loop().create_future()
            await asyncio.wait({self._arrived}, timeout=timeout_s)
            self._arrived = None
            if self.backend.closing.is_set():
                return None
        frames: list[bytes] = []
        size = 0
        while self.inbox and size < WRITE_BATCH_BYTES and not self.catching_up:
            pair, entry_frame = self.inbox.popleft()
            if pair > self.after:
                self.after = pair
                frames.append(entry_frame)
                size += len(entry_frame)
        if self.not_live and not self.inbox:
            self.ended = True
            frames.append(NOT_LIVE_FRAME)
        return frames

    async def _read_missed(self) -> list[bytes]:
        """The next page of entries after `after` held in Redis; the catch-up ends with a short page."""
        entries = await self.backend.commands.xrange(key(self.session_id, "events"), min=f"({id_text(self.after)}",
                                                     max="+", count=READ_BATCH_EVENTS)
        if self.must_find is not None:
            if not entries or id_pair(entries[0][0]) > self.must_find:
                self.fell_behind = True  # trimmed before it was sent: events lost to this watcher
                return []
            self.must_find = None
        frames: list[bytes] = []
        size = 0
        for entry_id, fields in entries:
            if size >= WRITE_BATCH_BYTES:
                return frames  # the rest in the next call, still catching up
            entry_frame = frame(self.session_id, entry_id, fields)
            self.after = id_pair(entry_id)
            if entry_frame is not None:
                frames.append(entry_frame)
                size += len(entry_frame)
        self.catching_up = len(entries) == READ_BATCH_EVENTS
        return frames

    async def close(self) -> None:
        self.backend.subscriptions.discard(self)
        self.backend.reader.leave(self)
        await self.backend.leases.release(self.session_id, self.lease)
