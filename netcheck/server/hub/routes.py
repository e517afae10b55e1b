"""The session hub's HTTP side: agents post a session's events, a therapist's `netcheck watch` streams them (SSE).

Contract: docs/session-hub.md. Where sessions live is the backend's business (hub_backends.py: in
memory, the embedded default; hub_redis.py: Redis Streams shared by several nodes). Everything a
peer can make the hub hold is bounded: sessions, events kept per session, watchers per session,
each watcher's queue, post rate per leg, body size, and how long a body or a write may take. A
watcher whose queue overflows or whose socket stops draining is disconnected, never waited for.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from netcheck.server.hub.backend import HubBackend, HubLimits, MemoryBackend, Subscription
from netcheck.server.hub.events import KEEPALIVE_FRAME, EventError, parse_events
from netcheck.server.refusal import Refusal, read_body
from netcheck.session.events import with_warning_words
from netcheck.tokens import LEGS, TokenClaims, TokenError, verify_token

__all__ = ["EVENTS_PATH", "HubLimits", "SessionHub", "register_disabled"]

EVENTS_PATH = "/v1/sessions/{session_id}/events"
LAST_EVENT_ID = re.compile(r"[0-9]{1,18}")


@dataclass
class HubCounters:
    """What this node's hub did since it started: the admin's view of its load (`netcheck_server`)."""

    posts_accepted: int = 0
    posts_refused: int = 0
    """Any refusal: bad token or body, over a limit (429), the backend unreachable (503)."""
    events_published: int = 0
    watchers_open: int = 0
    """SSE streams open on this node now."""
    watchers_dropped: int = 0
    """Streams cut because the watcher did not keep up (its queue overflowed or its socket stopped draining)."""


def session_claims(secret: bytes, request: web.Request) -> TokenClaims:
    """The claims of the request's Bearer token for the URL's session: one check, one wording, for the
    hub and every page of a session (legs/routes.py, session_pages.py); else a Refusal (401) whose
    reason is `missing`, `malformed`, or the token's own (`expired`, `other session`, …)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if not token and not scheme:
        raise Refusal(401, "missing", "missing token: send Authorization: Bearer <token>",
                      headers={"WWW-Authenticate": "Bearer"})
    if scheme.lower() != "bearer":
        raise Refusal(401, "malformed", "token refused: malformed", headers={"WWW-Authenticate": "Bearer"})
    try:
        return verify_token(secret, token.strip(), request.match_info["session_id"])
    except TokenError as error:
        raise Refusal(401, error.reason, str(error),
                      headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None


def hub_disabled() -> Refusal:
    """404 from every session path of a node without a secret: no hub, no tokens, no sessions."""
    return Refusal(404, "hub_disabled", "session hub disabled: the server has no secret (NETCHECK_SECRET)")


class SessionHub:
    """The hub's two endpoints over one backend (in memory unless one is given)."""

    def __init__(self, secret: bytes, limits: HubLimits = HubLimits(), backend: HubBackend | None = None) -> None:
        self.secret = secret
        self.limits = limits
        self.backend: HubBackend = backend or MemoryBackend(limits)
        self.counters = HubCounters()
        self.on_published: Callable[[list[dict[str, Any]]], None] | None = None
        """Given every accepted post's events with their session and leg (the node records them in its
        store: the hub holds only a session's last `history_events`, a report needs all of it)."""

    def routes(self, app: web.Application) -> None:
        app.router.add_post(EVENTS_PATH, self.post_events)
        app.router.add_get(EVENTS_PATH, self.watch_events, allow_head=False)  # a HEAD would hold a stream open
        app.on_shutdown.append(lambda _app: self.close())

    def watcher_count(self, session_id: str) -> int:
        """Watchers of the session on this node."""
        return self.backend.watcher_count(session_id)

    def checked_events(self, body: bytes, role: str) -> list[dict[str, Any]]:
        """A posted body's events as the hub publishes them: each checked (parse_events) and each
        warning with the sentences the server writes for `role`'s leg. The one way in, for an agent's
        POST and for a tab's window alike (legs/leg.py). Refusal 400 `bad_body` naming the field."""
        try:
            parsed = parse_events(body, self.limits.max_events_per_post, time.time(), self.limits.max_event_skew_s)
        except EventError as error:  # `field` says where, `problem` what (a code for programs)
            raise Refusal(400, "bad_body", str(error)[:300], field=error.field[:100], problem=error.problem) from None
        return [with_warning_words(event, role) for event in parsed]

    async def post_events(self, request: web.Request) -> web.Response:
        try:
            claims = session_claims(self.secret, request)
            if claims.role not in LEGS:
                raise Refusal(403, "role", "a check token measures only: it cannot post a session's events")
            await self.backend.admit_post(claims.session_id, claims.role)
            body = await read_body(request, self.limits.max_body_bytes, self.limits.body_timeout_s)
            events = self.checked_events(body, claims.role)
            last_id = await self.backend.publish(claims.session_id, claims.role, events, claims.accepted_until_s)
        except Refusal:
            self.counters.posts_refused += 1
            raise
        self.counters.posts_accepted += 1
        self.counters.events_published += len(events)
        if self.on_published is not None:
            self.on_published([{**event, "session_id": claims.session_id, "leg": claims.role} for event in events])
        return web.json_response({"accepted": len(events), "last_id": last_id}, status=202)

    async def watch_events(self, request: web.Request) -> web.StreamResponse:
        claims = session_claims(self.secret, request)
        if claims.role != "therapist":
            raise Refusal(403, "role", "only a therapist token may watch a session")
        subscription = await self.backend.subscribe(claims.session_id, _last_event_id(request), request.transport)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        self.counters.watchers_open += 1
        not_draining = False
        try:
            await response.prepare(request)
            await self._stream(response, subscription, claims.accepted_until_s)
        except (ConnectionError, asyncio.TimeoutError) as error:
            if request.transport is not None:  # gone, or not taking our writes: nothing more to say to it
                request.transport.abort()
            not_draining = isinstance(error, asyncio.TimeoutError)
        finally:
            self.counters.watchers_open -= 1
            self.counters.watchers_dropped += not_draining or subscription.fell_behind
            await subscription.close()
        return response

    async def close(self) -> None:
        """End every stream: cleanly if the watcher keeps up, else by cutting its socket."""
        await self.backend.close()

    async def _stream(self, response: web.StreamResponse, subscription: Subscription, until_s: float) -> None:
        """Frames as they come, a keep-alive comment on schedule, until the token stops being valid."""
        loop = asyncio.get_running_loop()
        next_keepalive_s = loop.time() + self.limits.keepalive_s
        while True:
            remaining_s = until_s - time.time()
            if remaining_s <= 0:
                return
            frames = await subscription.next_frames(min(remaining_s, max(0.0, next_keepalive_s - loop.time())))
            if frames is None:
                return
            batch = b"".join(frames)
            if loop.time() >= next_keepalive_s:
                batch += KEEPALIVE_FRAME
                next_keepalive_s = loop.time() + self.limits.keepalive_s
            if batch:
                await self._write(response, batch)

    async def _write(self, response: web.StreamResponse, data: bytes) -> None:
        await asyncio.wait_for(response.write(data), self.limits.write_timeout_s)


def _last_event_id(request: web.Request) -> int | None:
    """The watcher's Last-Event-ID; None when none was sent or it is not one of ours (live events only)."""
    value = request.headers.get("Last-Event-ID")
    if value is None or not LAST_EVENT_ID.fullmatch(value.strip()):
        return None
    return int(value.strip())


def register_disabled(app: web.Application) -> None:
    """Without a secret the hub is off; its paths say so in the contract's JSON rather than a bare 404."""

    async def disabled(_request: web.Request) -> web.Response:
        raise hub_disabled()

    app.router.add_post(EVENTS_PATH, disabled)
    app.router.add_get(EVENTS_PATH, disabled, allow_head=False)
