"""The session hub: agents post a session's events, a therapist's `netcheck watch` streams them (SSE).

Contract: docs/session-hub.md. Everything a peer can make the hub hold is bounded: sessions,
events kept per session, watchers per session, each watcher's queue, post rate per leg, body
size, and how long a body or a write may take. A watcher whose queue overflows or whose socket
stops draining is disconnected, never waited for.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from netcheck.server.hub_events import KEEPALIVE_FRAME, EventError, parse_events, sse_frame, stamp
from netcheck.server.reflector import SourceRateLimiter
from netcheck.tokens import TokenClaims, TokenError, verify_token

EVENTS_PATH = "/v1/sessions/{session_id}/events"
LEGS = ("client", "therapist")
"""The roles whose tokens post a leg of a session."""
LAST_EVENT_ID = re.compile(r"[0-9]{1,18}")
READ_CHUNK_BYTES = 16 * 1024
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
    session_idle_s: float = 6 * 3600.0
    """A session with no post and no watcher for this long may be forgotten to make room for a new one."""
    max_watchers: int = 8
    post_rate_per_s: float = 2.0
    post_burst: int = 10
    watcher_queue_events: int = 1000
    keepalive_s: float = 15.0
    write_timeout_s: float = 30.0
    """A watcher whose socket takes longer than this to take one write is cut off."""
    body_timeout_s: float = 10.0
    ids_from_clock: bool = True
    """A new session's event ids start at the wall clock in ms, so they keep rising across a server
    restart: a reconnecting watcher's Last-Event-ID is then older than every event of the new
    server, and it misses none. (At ≤ 80 events/s per session, ids never overtake the clock.)"""


@dataclass(eq=False)
class _Watcher:
    queue: asyncio.Queue[bytes | None]
    transport: asyncio.BaseTransport | None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: bool = False

    def abort(self) -> None:
        """Cut the connection at once: close() would wait for a non-reading peer to drain its buffer."""
        self.dropped = True
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]


@dataclass(eq=False)
class _Session:
    history: deque[tuple[int, bytes]]
    post_limiter: SourceRateLimiter
    last_active_s: float
    last_id: int = 0
    watchers: set[_Watcher] = field(default_factory=set)


class _Refusal(Exception):
    """Ends a request early with the contract's JSON error."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.response = web.json_response({"error": message}, status=status, headers=headers)


class SessionHub:
    """All sessions of one server, in memory: a restart forgets them (agents post on, watchers reconnect)."""

    def __init__(self, secret: bytes, limits: HubLimits = HubLimits()) -> None:
        self.secret = secret
        self.limits = limits
        self.sessions: dict[str, _Session] = {}
        self.closing = False

    def routes(self, app: web.Application) -> None:
        app.router.add_post(EVENTS_PATH, self.post_events)
        app.router.add_get(EVENTS_PATH, self.watch_events, allow_head=False)  # a HEAD would hold a stream open
        app.on_shutdown.append(lambda _app: self.close())

    def watcher_count(self, session_id: str) -> int:
        session = self.sessions.get(session_id)
        return len(session.watchers) if session else 0

    async def post_events(self, request: web.Request) -> web.Response:
        try:
            claims = self._authorize(request)
            if claims.role not in LEGS:
                raise _Refusal(403, "a check token measures only: it cannot post a session's events")
            session = self._session(claims.session_id)
            if not session.post_limiter.allow(claims.role, time.monotonic()):
                raise _Refusal(429, f"too many posts: at most {self.limits.post_rate_per_s:g} per second per leg",
                               {"Retry-After": "1"})
            try:
                events = parse_events(await self._read_body(request), self.limits.max_events_per_post)
            except EventError as error:
                raise _Refusal(400, str(error)) from None
        except _Refusal as refusal:
            return refusal.response
        last_id = 0
        for event in events:
            last_id = self._publish(session, claims, event)
        return web.json_response({"accepted": len(events), "last_id": last_id}, status=202)

    async def watch_events(self, request: web.Request) -> web.StreamResponse:
        try:
            claims = self._authorize(request)
            if claims.role != "therapist":
                raise _Refusal(403, "only a therapist token may watch a session")
            session = self._session(claims.session_id)
            _forget_disconnected(session)
            if len(session.watchers) >= self.limits.max_watchers:
                raise _Refusal(429, f"too many watchers of this session (at most {self.limits.max_watchers})")
        except _Refusal as refusal:
            return refusal.response
        watcher = _Watcher(asyncio.Queue(self.limits.watcher_queue_events), request.transport)
        for frame in _replay(session, request.headers.get("Last-Event-ID"))[-self.limits.watcher_queue_events:]:
            watcher.queue.put_nowait(frame)
        session.watchers.add(watcher)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        try:
            await response.prepare(request)
            await self._stream(response, watcher, claims.accepted_until_s)
        except (ConnectionError, asyncio.TimeoutError):
            watcher.abort()  # gone, or not taking our writes: nothing more to say to it
        finally:
            session.watchers.discard(watcher)
            session.last_active_s = time.monotonic()
            watcher.finished.set()
        return response

    async def close(self) -> None:
        """End every stream: cleanly if the watcher keeps up, else by cutting its socket."""
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

    def _authorize(self, request: web.Request) -> TokenClaims:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if not token and not scheme:
            raise _Refusal(401, "missing token: send Authorization: Bearer <token>", {"WWW-Authenticate": "Bearer"})
        if scheme.lower() != "bearer":
            raise _Refusal(401, "token refused: malformed", {"WWW-Authenticate": "Bearer"})
        try:
            return verify_token(self.secret, token.strip(), request.match_info["session_id"])
        except TokenError as error:
            raise _Refusal(401, str(error), {"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None

    def _session(self, session_id: str) -> _Session:
        """The session, created on first use; 503 when the hub is full of sessions that are still live."""
        if self.closing:
            raise _Refusal(503, "server shutting down")
        now_s = time.monotonic()
        session = self.sessions.get(session_id)
        if session is None:
            if len(self.sessions) >= self.limits.max_sessions:
                self._evict_idle(now_s)
            if len(self.sessions) >= self.limits.max_sessions:
                raise _Refusal(503, f"too many live sessions (at most {self.limits.max_sessions})",
                               {"Retry-After": "60"})
            session = _Session(deque(maxlen=self.limits.history_events),
                               SourceRateLimiter(self.limits.post_rate_per_s, self.limits.post_burst, 2), now_s,
                               last_id=int(time.time() * 1000) if self.limits.ids_from_clock else 0)
            self.sessions[session_id] = session
        session.last_active_s = now_s
        return session

    def _evict_idle(self, now_s: float) -> None:
        idle = [session_id for session_id, session in self.sessions.items()
                if not session.watchers and now_s - session.last_active_s > self.limits.session_idle_s]
        for session_id in idle:
            del self.sessions[session_id]

    async def _read_body(self, request: web.Request) -> bytes:
        """At most max_body_bytes, within body_timeout_s: a slow or endless body must not hold a handler."""
        limit = self.limits.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _Refusal(413, f"body larger than {limit} bytes")
        body = bytearray()

        async def read() -> None:
            async for chunk in request.content.iter_chunked(READ_CHUNK_BYTES):
                body.extend(chunk)
                if len(body) > limit:
                    raise _Refusal(413, f"body larger than {limit} bytes")

        try:
            await asyncio.wait_for(read(), self.limits.body_timeout_s)
        except asyncio.TimeoutError:
            raise _Refusal(408, f"body not received within {self.limits.body_timeout_s:g} s") from None
        return bytes(body)

    def _publish(self, session: _Session, claims: TokenClaims, event: dict[str, Any]) -> int:
        session.last_id += 1
        frame = sse_frame(stamp(event, session.last_id, claims.session_id, claims.role))
        session.history.append((session.last_id, frame))
        for watcher in list(session.watchers):
            try:
                watcher.queue.put_nowait(frame)
            except asyncio.QueueFull:  # it has not read 1000 events: drop it rather than hold more for it
                session.watchers.discard(watcher)
                watcher.abort()
        return session.last_id

    async def _stream(self, response: web.StreamResponse, watcher: _Watcher, until_s: float) -> None:
        """Queued frames as they come, a keep-alive comment on schedule, until the token stops being valid."""
        loop = asyncio.get_running_loop()
        next_keepalive_s = loop.time() + self.limits.keepalive_s
        getter: asyncio.Future[bytes | None] | None = None
        try:
            while not watcher.dropped:
                remaining_s = until_s - time.time()
                if remaining_s <= 0:
                    return
                if getter is None:  # kept across timeouts: cancelling a get could lose its frame
                    getter = asyncio.ensure_future(watcher.queue.get())
                await asyncio.wait({getter}, timeout=min(remaining_s, max(0.0, next_keepalive_s - loop.time())))
                batch = bytearray()
                if getter.done():
                    frame, getter = getter.result(), None
                    if frame is None:
                        return
                    batch += frame
                    while len(batch) < WRITE_BATCH_BYTES and not watcher.queue.empty():
                        frame = watcher.queue.get_nowait()
                        if frame is None:
                            await self._write(response, bytes(batch))
                            return
                        batch += frame
                if loop.time() >= next_keepalive_s:
                    batch += KEEPALIVE_FRAME
                    next_keepalive_s = loop.time() + self.limits.keepalive_s
                if batch:
                    await self._write(response, bytes(batch))
        finally:
            if getter is not None:
                getter.cancel()

    async def _write(self, response: web.StreamResponse, data: bytes) -> None:
        await asyncio.wait_for(response.write(data), self.limits.write_timeout_s)


def _replay(session: _Session, last_event_id: str | None) -> list[bytes]:
    """The held frames after `Last-Event-ID`; all of them if the id is newer than any we issued (we restarted)."""
    if last_event_id is None or not LAST_EVENT_ID.fullmatch(last_event_id.strip()):
        return []  # none sent, or not one of ours: live events only
    seen = int(last_event_id.strip())
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


def register_disabled(app: web.Application) -> None:
    """Without a secret the hub is off; its paths say so in the contract's JSON rather than a bare 404."""

    async def disabled(_request: web.Request) -> web.Response:
        return web.json_response({"error": "session hub disabled: the server has no secret (NETCHECK_SECRET)"},
                                 status=404)

    app.router.add_post(EVENTS_PATH, disabled)
    app.router.add_get(EVENTS_PATH, disabled, allow_head=False)
