"""How the server refuses a request, and the one way it reads a request's body.

Every endpoint refuses by raising `Refusal`; the `refusals` middleware turns it into the contract's
JSON: `{"error": one sentence for people, "reason": a stable code for programs, ...}` (plus
`Retry-After` and `retry_after_s` when waiting helps). Pages and clients classify a refusal by its
`reason` (netcheck/web/refusal.js), never by the sentence, which may be reworded. The codes are
REASONS, documented in docs/http-api.md, "Refusals".

`read_body` is the one body reader: a body larger than its limit is refused (413 `too_large`)
without reading more than the limit, and one that does not arrive within the app's body time limit
(408 `too_slow`): a client that sends the headers and then dribbles the body must not hold a handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from netcheck.browser.check_body import BodyError

TOKEN_REASONS = frozenset({"missing", "malformed", "bad signature", "expired", "other session", "no_tokens"})
"""401: no token, one that is not ours, or (`no_tokens`) a token sent to a node that has no secret to verify it.
The middle four are tokens.TokenError.REASONS, kept as they were (spaces included)."""
REASONS = frozenset({
    *TOKEN_REASONS,
    "role",  # 403: the token's role may not do this (a client's token reading a report, a check token posting)
    "foreign_origin",  # 403: a web page of another origin posted a check
    "bad_body",  # 400: a body that is not the contract's (`field` names where, when known)
    "bad_offer",  # 400: an offer whose session description the server cannot answer
    "bad_query",  # 400: a query or path parameter out of its range
    "not_found",  # 404: no such check, leg, call, test, page or file
    "hub_disabled",  # 404: the node has no secret, so no session hub
    "too_slow",  # 408: the body (or an upload) did not arrive in time
    "too_long",  # 408: an upload went on longer than a test may last
    "replaced",  # 409: a newer tab of the same session and role measures now
    "room_taken",  # 409: the room is bound to another session (the rtcstats door)
    "unbound_room",  # 403: a conference of a room bound to no session (the rtcstats door)
    "too_large",  # 413
    "content_type",  # 415: a check must be posted as application/json
    "busy",  # 429 or 503: the node is at one of its limits (CPU, fair shares, tabs, sessions, watchers)
    "rate",  # 429: this caller asks faster than its rate
    "unavailable",  # 503: the node is stopping, or its store or hub backend cannot be reached
    "no_store",  # 503: the node keeps no checks (started without a store)
})
"""Every `reason` a refusal can carry; a new one is added here and in docs/http-api.md."""
BODY_TIMEOUT_S = 10.0
"""How long a request's body may take to arrive: 256 kB at 200 kbit/s, with room."""
BODY_TIMEOUT: web.AppKey[float] = web.AppKey("body_timeout_s", float)
"""The app's body time limit, when not BODY_TIMEOUT_S (tests shorten it)."""
MAX_REQUEST_BYTES = 64 * 1024
"""A body's size when its endpoint names no other: an offer, a window, a post of events."""
READ_CHUNK_BYTES = 16 * 1024


class Refusal(Exception):
    """A request the server refuses: its status, a code from REASONS, one sentence for people, and
    (429, 503) how many seconds to wait before asking again. `fields` are further body fields (`field`:
    where a body broke the contract); `headers` further headers (`WWW-Authenticate`)."""

    def __init__(self, status: int, reason: str, message: str, retry_after_s: int | None = None,
                 headers: dict[str, str] | None = None, **fields: Any) -> None:
        if reason not in REASONS:
            raise ValueError(f"refusal reason {reason!r} is not one of REASONS")
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after_s = retry_after_s
        self.headers = headers or {}
        self.fields = fields

    def response(self) -> web.Response:
        """The contract's JSON answer (the middleware's; an app without it, such as a test's, may return it)."""
        body: dict[str, Any] = {"error": self.message, "reason": self.reason, **self.fields}
        headers = {"Cache-Control": "no-store", **self.headers}
        if self.retry_after_s is not None:
            body["retry_after_s"] = self.retry_after_s
            headers["Retry-After"] = str(self.retry_after_s)
        return web.json_response(body, status=self.status, headers=headers)


@web.middleware
async def refusals(request: web.Request,
                   handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """A handler's Refusal → its JSON answer (the one place refusals become responses)."""
    try:
        return await handler(request)
    except Refusal as refusal:
        return refusal.response()


def busy(retry_after_s: int, why: str, reason: str = "busy") -> Refusal:
    """429 + Retry-After: the client waits and tries again; the sentence says why, for people."""
    return Refusal(429, reason, f"the clinic's test server is busy ({why}); retry in {retry_after_s} s", retry_after_s)


def bad_body(error: BodyError) -> Refusal:
    """400 naming where a body broke its contract (`field`), for every endpoint that takes one."""
    return Refusal(400, "bad_body", str(error)[:300], field=error.field[:100])


def sdp_not_accepted(error: Exception) -> Refusal:
    """400 for an offer aiortc could not answer (it raises ValueError, KeyError, … on a malformed SDP)."""
    return Refusal(400, "bad_offer", f"bad offer: SDP not accepted ({type(error).__name__}: {error})"[:300])


async def read_body(request: web.Request, limit_bytes: int = MAX_REQUEST_BYTES,
                    timeout_s: float | None = None) -> bytes:
    """The whole body, at most `limit_bytes` (else 413 `too_large`, reading no more than a chunk past it),
    within `timeout_s` (None: the app's BODY_TIMEOUT, else BODY_TIMEOUT_S; else 408 `too_slow`)."""
    if timeout_s is None:
        timeout_s = request.app.get(BODY_TIMEOUT, BODY_TIMEOUT_S)
    too_large = Refusal(413, "too_large", f"body larger than {limit_bytes} bytes")
    if request.content_length is not None and request.content_length > limit_bytes:
        raise too_large
    body = bytearray()

    async def read() -> bool:
        async for chunk in request.content.iter_chunked(READ_CHUNK_BYTES):
            body.extend(chunk)
            if len(body) > limit_bytes:
                return False
        return True

    try:
        complete = await asyncio.wait_for(read(), timeout_s)
    except asyncio.TimeoutError:
        raise Refusal(408, "too_slow", f"body not received within {timeout_s:g} s") from None
    if not complete:
        raise too_large
    return bytes(body)
