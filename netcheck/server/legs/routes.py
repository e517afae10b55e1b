"""A leg of a session measured from an open browser tab (issue 14): the client's, or the therapist's
own ("Also check my connection" in the panel), from the same page `/session/{id}/client`.

The tab (netcheck/web/session-client.*) keeps one peer connection with the server for the session;
the server measures the leg on it (peer.py), assesses each window with the same quality model
and publishes it into the session hub as the token's leg, exactly as the CLI agent's windows are
(leg.py). The leg is the token's role, never the body's or the URL's alone: the URL names
the role only so that a token of the other role is refused (403) rather than measured as the wrong
person. Legs are keyed by (session, role): a client's and a therapist's tab measure side by side.
Contract and bounds: docs/in-session.md, "The client's tab" and "Also check my connection".

| route | token | answers |
|---|---|---|
| `GET /session/{id}/client` | none (the page reads it from the URL fragment) | the page, for either role |
| `POST /v1/sessions/{id}/legs/{role}/offer` | `{role}` token of `{id}` | 200 the answer, `leg_id`, `role`, window, rate |
| `POST /v1/sessions/{id}/legs/{role}/window` | `{role}` token of `{id}` | 200 the window's index, `connection` ok/weak |
| `DELETE /v1/sessions/{id}/legs/{role}/{leg_id}` | `{role}` token of `{id}` | 204 (the tab went away) |

`{role}` is `client` or `therapist`. Errors are the hub's JSON (`{"error": "token refused: expired",
"reason": "expired"}`): 401 no, malformed, wrongly signed, expired or other-session token; 403 a token
of another role than the path's, or a check token (`reason: "role"`); 404 hub disabled (no secret) or
no such open leg; 409 a newer tab of the same session and role took the leg over; 400 a body that is
not the contract's (naming the field); 413 too large; 429 + Retry-After when the server measures as
many tabs as it may, the node is short of CPU (its own, headroom.py), or a tab reports faster than its window.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from aiohttp import web

from netcheck.browser.check_body import BodyError
from netcheck.browser.tab import LATE_REPLY_MS, MAX_REPORT_BYTES, LegOffer, parse_offer, parse_report
from netcheck.quality import METRICS
from netcheck.server.capacity import Capacity
from netcheck.server.checks import CheckEndpoints
from netcheck.server.hub.routes import SessionHub, hub_disabled, session_claims
from netcheck.server.media import MediaPeerHub
from netcheck.server.rate import TokenBuckets
from netcheck.server.refusal import Refusal, bad_body, busy, read_body, sdp_not_accepted
from netcheck.server.web import CONTENT_TYPES, resolve, static_headers
from netcheck.tokens import LEGS, SESSION_ID, TokenClaims

if TYPE_CHECKING:  # leg.py and peer.py bring aiortc: imported when a tab offers, not when the server starts
    from netcheck.server.legs.leg import TabLeg

PAGE = "session-client.html"
LEG_PATH = f"/v1/sessions/{{session_id}}/legs/{{role:{'|'.join(LEGS)}}}"
"""The role in the path must be the token's (else 403): the leg itself is always the token's role."""
MAX_TAB_LEGS = 20
"""Tabs measured at once by one node, clients' and therapists' together; each costs the server a few %
of a core (BENCHMARKS.md, session tabs). Not the checks' A/V share: a leg is held for a whole session,
a check's call for 10 s."""
BUSY_RETRY_S = 30
SILENT_WINDOWS = 3
"""A tab that has not reported for this many windows (and at least SILENT_MIN_S) is gone: its leg closes."""
SILENT_MIN_S = 15.0
REPORT_BURST = 3.0
"""Reports of a tab: one a window, a few at once after a pause; faster is refused (429)."""
REPLACED_KEPT = 256
OFFER_BURST = 5.0
OFFER_EVERY_S = 5.0
"""Offers of one leg (session and role): a few at once (a reload, a reconnect after a blip), then one every 5 s: each
builds a peer connection, and a token holder looping offers must not make the server build them all."""
MAX_OFFERING_SESSIONS = 4096
WATCH_EVERY_S = 1.0
CPU_BUSY_RETRY_S = 5


class SessionTabs:
    """The session tabs' endpoints, each tab measuring a leg of either role (a client's or a therapist's);
    register with `routes(app)`."""

    def __init__(self, hub: SessionHub | None, media: MediaPeerHub, capacity: Capacity,
                 checks: CheckEndpoints | None) -> None:
        self.hub = hub
        """None: no secret, the hub is off."""
        self.media = media
        """Its ICE settings."""
        self.capacity = capacity
        """The CPU headroom."""
        self.checks = checks
        """The node's store (session events, points) and its settings."""
        self.legs: dict[tuple[str, str], TabLeg] = {}
        """(session id, role) → its open leg: a client's and a therapist's tab side by side."""
        self.replaced: OrderedDict[str, None] = OrderedDict()
        """Leg ids a newer tab took over: their tabs are told so (409), not asked to reconnect."""
        self.max_legs = MAX_TAB_LEGS
        self.opening: dict[tuple[str, str], int] = {}
        """(session id, role) → offers admitted and still building their peer connection: they hold a tab's
        place across the await, so concurrent offers cannot all pass the bound before any is counted."""
        self._limiters: dict[str, TokenBuckets] = {}
        self._offers = TokenBuckets(1.0 / OFFER_EVERY_S, OFFER_BURST, MAX_OFFERING_SESSIONS)
        self._watcher: asyncio.Task | None = None
        self._closing: set[asyncio.Task] = set()

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/session/{session_id}/client", self.page)
        app.router.add_post(f"{LEG_PATH}/offer", self.offer)
        app.router.add_post(f"{LEG_PATH}/window", self.window)
        app.router.add_delete(LEG_PATH + "/{leg_id}", self.leave)

    async def close(self) -> None:
        """Close every open tab's peer connection (the server is stopping)."""
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        await asyncio.gather(*(self._close(leg, "the server is stopping") for leg in list(self.legs.values())))

    async def page(self, request: web.Request) -> web.Response:
        path = resolve(PAGE)
        if not SESSION_ID.fullmatch(request.match_info["session_id"]) or path is None:
            raise Refusal(404, "not_found", "no such page", headers={"Cache-Control": "no-cache"})
        return web.Response(body=path.read_bytes(), headers=static_headers(CONTENT_TYPES["html"]))

    async def offer(self, request: web.Request) -> web.Response:
        claims = self._authorize(request)
        try:
            offer = parse_offer(await read_body(request))
        except BodyError as error:
            raise bad_body(error) from None
        cpu = self.capacity.cpu
        if cpu is not None and cpu.busy:  # the node's own CPU, never the machine's; after a bad body's 400 (media.py)
            raise busy(CPU_BUSY_RETRY_S, cpu.load.reason(cpu.limits))
        session_id, role = key = (claims.session_id, claims.role)
        if not self._offers.allow(f"{session_id}/{role}", time.monotonic()):
            raise busy(round(OFFER_EVERY_S), f"too many offers for the {role}'s leg of this session", "rate")
        if not self._hold(key):
            raise busy(BUSY_RETRY_S, f"all {self.max_legs} session tabs this server measures are open")
        try:
            return await self._open(request, claims, offer)
        finally:
            self._release(key)

    def _hold(self, key: tuple[str, str]) -> bool:
        """Admit an offer for leg `key` and hold its place until it opens or fails: checked and counted with
        no await between, so the bound holds however many offers arrive at once (a takeover takes no new place)."""
        places = self.legs.keys() | self.opening.keys()
        if key not in places and len(places) >= self.max_legs:
            return False
        self.opening[key] = self.opening.get(key, 0) + 1
        return True

    def _release(self, key: tuple[str, str]) -> None:
        left = self.opening.pop(key) - 1
        if left:
            self.opening[key] = left

    async def _open(self, request: web.Request, claims: TokenClaims, offer: LegOffer) -> web.Response:
        """Answer an admitted offer: the peer connection, then the leg (a newer tab of the same leg takes over)."""
        from netcheck.server.legs.leg import LegSinks, TabLeg  # aiortc: only once a tab offers
        from netcheck.server.legs.peer import LegPeer

        session_id, role = key = (claims.session_id, claims.role)
        leg_id = secrets.token_hex(16)
        peer = LegPeer(self.media.ice, offer.rate_pps, lambda reason: self._gone(leg_id, reason))
        try:
            sdp = await peer.answer(offer.sdp)
        except Exception as error:  # aiortc raises ValueError, KeyError, … on a malformed SDP
            await peer.close()
            raise sdp_not_accepted(error) from None
        settings = self.checks.settings if self.checks is not None else None
        sinks = LegSinks(self.hub, self.checks, settings.thresholds if settings else METRICS,
                         settings.site if settings else None, node_address(request),
                         settings.on_event if settings else (lambda message: None))
        leg = TabLeg(leg_id, session_id, role, claims.accepted_until_s, peer, offer.window_s, sinks,
                     self.capacity.cpu)
        previous = self.legs.get(key)
        self.legs[key] = leg
        self._limiters[leg_id] = TokenBuckets(2.0 / offer.window_s, REPORT_BURST, max_keys=1)
        if previous is not None:  # the same leg in a new tab (a reload): the newest measures
            await self._close(previous, "a newer tab took over", replaced=True)
        self._watch()
        return web.json_response({"type": "answer", "sdp": sdp, "leg_id": leg_id, "role": role,
                                  "window_s": offer.window_s, "rate_pps": offer.rate_pps,
                                  "late_reply_ms": LATE_REPLY_MS}, headers={"Cache-Control": "no-store"})

    async def window(self, request: web.Request) -> web.Response:
        claims = self._authorize(request)
        try:
            report = parse_report(await read_body(request, MAX_REPORT_BYTES))
        except BodyError as error:
            raise bad_body(error) from None
        leg = self.legs.get((claims.session_id, claims.role))
        if leg is None or leg.leg_id != report["leg_id"]:
            if report["leg_id"] in self.replaced:
                raise Refusal(409, "replaced",
                              f"a newer tab of this session measures the {claims.role}'s connection now")
            raise Refusal(404, "not_found", "no open leg with this id (closed or expired): open it again")
        limiter = self._limiters.get(leg.leg_id)
        if limiter is None or not limiter.allow("tab", time.monotonic()):
            raise Refusal(429, "rate", "reports come once a window", max(1, round(leg.window_s)))
        return web.json_response(await leg.window(report), headers={"Cache-Control": "no-store"})

    async def leave(self, request: web.Request) -> web.Response:
        claims = self._authorize(request)
        leg = self.legs.get((claims.session_id, claims.role))
        if leg is None or leg.leg_id != request.match_info["leg_id"]:
            raise Refusal(404, "not_found", "no open leg with this id (closed or expired)")
        await self._close(leg, "the tab went away")
        return web.Response(status=204)

    def _authorize(self, request: web.Request) -> TokenClaims:
        return leg_claims(self.hub, request)

    def _gone(self, leg_id: str, reason: str) -> None:
        """The peer connection failed, closed or misbehaved: close its leg (from aiortc's callbacks)."""
        for leg in list(self.legs.values()):
            if leg.leg_id == leg_id:
                task = asyncio.ensure_future(self._close(leg, reason))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def _close(self, leg: TabLeg, reason: str, replaced: bool = False) -> None:
        """Close `leg`, saying why on the server's log (one line; the session id is opaque)."""
        leg.sinks.on_event(f"session {leg.session_id}: the {leg.role}'s tab stopped measuring ({reason})")
        if self.legs.get((leg.session_id, leg.role)) is leg:
            del self.legs[(leg.session_id, leg.role)]
        self._limiters.pop(leg.leg_id, None)
        if replaced:
            self.replaced[leg.leg_id] = None
            while len(self.replaced) > REPLACED_KEPT:
                self.replaced.popitem(last=False)
        await leg.close()

    def _watch(self) -> None:
        """Close legs whose tab stopped reporting and legs whose token ran out (one task for all)."""
        if self._watcher is not None and not self._watcher.done():
            return

        async def every_second() -> None:
            while self.legs:
                await asyncio.sleep(WATCH_EVERY_S)
                now_s, now_unix_s = time.monotonic(), time.time()
                for leg in list(self.legs.values()):
                    silent_s = max(SILENT_WINDOWS * leg.window_s + LATE_REPLY_MS / 1000.0, SILENT_MIN_S)
                    if now_unix_s > leg.until_s:
                        await self._close(leg, "its token expired")
                    elif now_s - leg.last_report_s > silent_s:
                        await self._close(leg, f"no report for {silent_s:g} s")

        self._watcher = asyncio.ensure_future(every_second())


def leg_claims(hub: SessionHub | None, request: web.Request) -> TokenClaims:
    """A token of the URL's session whose role is the path's, or the hub's refusal in its own words.
    The leg is the token's role; the path's only has to agree (a check token measures no leg). For a
    tab's leg and a call's alike (call.py)."""
    if hub is None:
        raise hub_disabled()
    claims = session_claims(hub.secret, request)
    role = request.match_info["role"]
    if claims.role != role:
        raise Refusal(403, "role", f"only the session's {role} token measures the {role}'s connection")
    return claims


def node_address(request: web.Request) -> str:
    """This node as host:port, from the connection's own address (not the client's Host header)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        return "unknown"
    host = f"[{sockname[0]}]" if ":" in str(sockname[0]) else sockname[0]
    return f"{host}:{sockname[1]}"
