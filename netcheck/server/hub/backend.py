"""Where the session hub keeps its sessions: the interface the HTTP layer (hub.py) uses, and the
embedded in-memory backend. The Redis backend (hub_redis.py) keeps them in Redis Streams so that
several `netcheck serve` nodes share them (docs/session-hub.md, "Backends").

A backend admits posts (per-leg rate), publishes events (it assigns their ids), and subscribes
watchers (per-session count, replay after Last-Event-ID, then live events). It refuses with
a `Refusal` (server/refusal.py), which the app's middleware turns into the contract's JSON error.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from netcheck.instants import MAX_CLOCK_SKEW_S
from netcheck.server.hub.events import sse_frame, stamp
from netcheck.server.rate import TokenBuckets
from netcheck.server.refusal import Refusal
from netcheck.tokens import LEGS

WRITE_BATCH_BYTES = 64 * 1024
CLOSE_GRACE_S = 1.0
"""On shutdown, how long watchers get to end their streams cleanly before their sockets are cut."""


@dataclass(frozen=True)
class HubLimits:
    """The contract's bounds; tests shorten the times and shrink the counts."""

    max_body_bytes: int = 64 * 1024
    max_events_per_post: int = 20
    history_events: int = 500
    max_sessions: int = 1000
    """In memory only: Redis holds sessions bounded by their expiry and history instead."""
    session_idle_s: float = 6 * 3600.0
    """A session with no post and no watcher for this long may be forgotten to make room for a new one."""
    max_watchers: int = 8
    post_rate_per_s: float = 2.0
    post_burst: int = 10
    watcher_queue_events: int = 1000
    keepalive_s: float = 15.0
    lease_keepalives: int = 3
    """Redis only: a watcher's lease (its place across nodes) lasts this many keep-alives and is renewed
    at each; a node that dies frees its places within it (tests shorten `keepalive_s` to compress it)."""
    write_timeout_s: float = 30.0
    """A watcher whose socket takes longer than this to take one write is cut off."""
    body_timeout_s: float = 10.0
    max_event_skew_s: float = MAX_CLOCK_SKEW_S
    """An event's `at` this far from the server's clock, either way, is refused (netcheck/instants.py)."""
    ids_from_clock: bool = True
    """A new session's event ids start at the wall clock in ms, so they keep rising across a server
    restart: a reconnecting watcher's Last-Event-ID is then older than every event of the new
    server, and it misses none. (At ≤ 80 events/s per session, ids never overtake the clock.)"""


class Subscription(Protocol):
    """One watcher's stream: held frames after its Last-Event-ID first, then live ones."""

    fell_behind: bool
    """The backend cut this watcher because it did not keep up (counted in the node's metrics)."""

    async def next_frames(self, timeout_s: float) -> list[bytes] | None:
        """The next frames in order; [] when none came within `timeout_s`; None when the stream must end."""

    async def close(self) -> None:
        """Give up the watcher's place (always called, also when the socket broke)."""


class HubBackend(Protocol):
    async def admit_post(self, session_id: str, leg: str) -> None:
        """Raise a Refusal (429) when the leg posts too fast, (503) when the store cannot take it.
        Called before the body is read: a shared store may count only this node's share here."""

    async def publish(self, session_id: str, leg: str, events: list[dict[str, Any]], until_s: float) -> int:
        """Store and fan out `events` (agent events, already validated); the id of the last one.
        Raises a Refusal (429) when a shared store finds the leg over its rate across nodes, (503)
        when the store cannot take them.

        `until_s`: the posting token's expiry (unix seconds), how long the session must be kept at least.
        """

    async def subscribe(self, session_id: str, last_event_id: int | None,
                        transport: asyncio.BaseTransport | None) -> Subscription:
        """A new watcher of the session, replaying after `last_event_id` (None: live events only)."""

    def watcher_count(self, session_id: str) -> int:
        """Watchers of the session on this node."""

    async def close(self) -> None:
        """End every stream promptly (cleanly if the watcher keeps up) and release connections."""


@dataclass(eq=False)
class _MemoryWatcher:
    session: _Session
    queue: asyncio.Queue[bytes | None]
    transport: asyncio.BaseTransport | None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: bool = False
    ended: bool = False
    fell_behind: bool = False
    _getter: asyncio.Future[bytes | None] | None = None

    def abort(self) -> None:
        """Cut the connection at once: close() would wait for a non-reading peer to drain its buffer."""
        self.dropped = True
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]

    async def next_frames(self, timeout_s: float) -> list[bytes] | None:
        if self.dropped or self.ended:
            return None
        if self._getter is None:  # kept across timeouts: cancelling a get could lose its frame
            self._getter = asyncio.ensure_future(self.queue.get())
        await asyncio.wait({self._getter}, timeout=max(0.0, timeout_s))
        if not self._getter.done():
            return []
        frame, self._getter = self._getter.result(), None
        if frame is None:
            return None
        frames, size = [frame], len(frame)
        while size < WRITE_BATCH_BYTES and not self.queue.empty():
            frame = self.queue.get_nowait()
            if frame is None:
                self.ended = True  # these frames still go out; the next call ends the stream
                break
            frames.append(frame)
            size += len(frame)
        return frames

    async def close(self) -> None:
        if self._getter is not None:
            self._getter.cancel()
        self.session.watchers.discard(self)
        self.session.last_active_s = time.monotonic()
        self.finished.set()


@dataclass(eq=False)
class _Session:
    history: deque[tuple[int, bytes]]
    post_limiter: TokenBuckets
    last_active_s: float
    last_id: int = 0
    watchers: set[_MemoryWatcher] = field(default_factory=set)


class MemoryBackend:
    """All sessions of one server, in memory: a restart forgets them (agents post on, watchers reconnect)."""

    def __init__(self, limits: HubLimits = HubLimits()) -> None:
        self.limits = limits
        self.sessions: dict[str, _Session] = {}
        self.closing = False

    def watcher_count(self, session_id: str) -> int:
        session = self.sessions.get(session_id)
        return len(session.watchers) if session else 0

    async def admit_post(self, session_id: str, leg: str) -> None:
        if not self._session(session_id).post_limiter.allow(leg, time.monotonic()):
            raise Refusal(429, "rate", f"too many posts: at most {self.limits.post_rate_per_s:g} per second per leg", 1)

    async def publish(self, session_id: str, leg: str, events: list[dict[str, Any]], until_s: float) -> int:
        session = self._session(session_id)
        for event in events:
            session.last_id += 1
            frame = sse_frame(stamp(event, session.last_id, session_id, leg))
            session.history.append((session.last_id, frame))
            for watcher in list(session.watchers):
                try:
                    watcher.queue.put_nowait(frame)
                except asyncio.QueueFull:  # it has not read 1000 events: drop it rather than hold more for it
                    session.watchers.discard(watcher)
                    watcher.fell_behind = True
                    watcher.abort()
        return session.last_id

    async def subscribe(self, session_id: str, last_event_id: int | None,
                        transport: asyncio.BaseTransport | None) -> _MemoryWatcher:
        session = self._session(session_id)
        _forget_disconnected(session)
        if len(session.watchers) >= self.limits.max_watchers:
            raise Refusal(429, "busy", f"too many watchers of this session (at most {self.limits.max_watchers})")
        watcher = _MemoryWatcher(session, asyncio.Queue(self.limits.watcher_queue_events), transport)
        for frame in _replay(session, last_event_id)[-self.limits.watcher_queue_events:]:
            watcher.queue.put_nowait(frame)
        session.watchers.add(watcher)
        return watcher

    async def close(self) -> None:
        self.closing = True
        watchers = [watcher for session in self.sessions.values() for watcher in session.watchers]
        for watcher in watchers:
            try:
                watcher.queue.put_nowait(None)
            except asyncio.QueueFull:
                watcher.abort()
        if watchers:
            waits = [asyncio.ensure_future(watcher.finished.wait()) for watcher in watchers]
            _, pending = await asyncio.wait(waits, timeout=CLOSE_GRACE_S)
            for wait in pending:
                wait.cancel()
        for watcher in watchers:
            if not watcher.finished.is_set():
                watcher.abort()

    def _session(self, session_id: str) -> _Session:
        """The session, created on first use; 503 when the hub is full of sessions that are still live."""
        if self.closing:
            raise Refusal(503, "unavailable", "server shutting down")
        now_s = time.monotonic()
        session = self.sessions.get(session_id)
        if session is None:
            if len(self.sessions) >= self.limits.max_sessions:
                self._evict_idle(now_s)
            if len(self.sessions) >= self.limits.max_sessions:
                raise Refusal(503, "busy", f"too many live sessions (at most {self.limits.max_sessions})", 60)
            session = _Session(deque(maxlen=self.limits.history_events),
                               TokenBuckets(self.limits.post_rate_per_s, self.limits.post_burst, len(LEGS)), now_s,
                               last_id=int(time.time() * 1000) if self.limits.ids_from_clock else 0)
            self.sessions[session_id] = session
        session.last_active_s = now_s
        return session

    def _evict_idle(self, now_s: float) -> None:
        idle = [session_id for session_id, session in self.sessions.items()
                if not session.watchers and now_s - session.last_active_s > self.limits.session_idle_s]
        for session_id in idle:
            del self.sessions[session_id]


def _replay(session: _Session, seen: int | None) -> list[bytes]:
    """The held frames after `seen`; all of them if it is newer than any we issued (we restarted)."""
    if seen is None:
        return []
    if seen > session.last_id:
        seen = 0
    return [frame for event_id, frame in session.history if event_id > seen]


def _forget_disconnected(session: _Session) -> None:
    """Watchers that hung up: their handlers only notice at their next write, so free their places now."""
    for watcher in list(session.watchers):
        if watcher.transport is None or watcher.transport.is_closing():
            session.watchers.discard(watcher)
            watcher.dropped = True
            try:
                watcher.queue.put_nowait(None)  # wakes its handler so it ends
            except asyncio.QueueFull:
                pass
