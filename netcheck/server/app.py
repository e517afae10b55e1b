"""`netcheck serve`: the HTTP API and the UDP reflector, started and stopped together."""

from __future__ import annotations

import asyncio
import base64
import gc
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from netcheck import __version__
from netcheck.net import stamped, wire
from netcheck.av.peer import IceSettings
from netcheck.config import ServeLimits
from netcheck.store.points import Origin
from netcheck.probes.throughput import RAMP_S
from netcheck.server.hub.routes import HubLimits, SessionHub, register_disabled
from netcheck.server.node_metrics import NODE_METRICS_EVERY_S, NodeSources, report_node_metrics
from netcheck.server.access import Caller, MeasuringAccess
from netcheck.server.admission import FairShare
from netcheck.server.capacity import Capacity
from netcheck.server.checks import FROM_TRUSTED_PROXY, CheckEndpoints, CheckSettings
from netcheck.server.headroom import CpuHeadroom
from netcheck.server.media import MAX_SESSIONS, MediaPeerHub
from netcheck.server.reflector import Reflector
from netcheck.server.refusal import BODY_TIMEOUT, BODY_TIMEOUT_S, MAX_REQUEST_BYTES, Refusal, refusals
from netcheck.server.legs.call import SessionCalls
from netcheck.server.legs.rooms import RoomBindings
from netcheck.server.legs.rtcstats import RtcstatsDoor
from netcheck.server.legs.routes import SessionTabs
from netcheck.server.session_pages import SessionPages
from netcheck.server.throughput import MAX_STREAMS, ThroughputEndpoints
from netcheck.server.udp_keys import ClientKeys
from netcheck.server.web import StaticPages, call_cors, framed_by
from netcheck.server.turn_credentials import BrowserTurn

AV_SESSIONS_PER_CLIENT = 2
GC_THRESHOLDS = (20_000, 20, 10)
"""A young collection after 20,000 new container objects instead of Python's 700; the older ones as often
relative to it as Python's (10, 10) nearly: a serving node's objects are few cycles and many live streams."""
"""A check runs one call. Two, because an address may be a household or an office behind one NAT (a
therapist's agent and a client's check); half of the total, so one client never takes them all."""
AV_SESSION_EXPECTED_S = 10.0
"""A check's call: ICE, a few seconds of media, the report."""
THROUGHPUT_STREAMS_PER_CLIENT = 8
"""A check opens 4 per direction, one direction at a time; 8 leaves room for the switch."""
THROUGHPUT_STREAM_EXPECTED_S = 8.0
TURN_LABEL = "netcheck"
"""The TURN username's label for a page without a token; with one, its session id (the TURN server's
log then names the check's session)."""
SESSION_TABS = web.AppKey("session_tabs", SessionTabs)
SESSION_CALLS = web.AppKey("session_calls", SessionCalls)
"""The session calls' legs and their counters (issue 25)."""
RTCSTATS_DOOR = web.AppKey("rtcstats_door", RtcstatsDoor)
"""Jitsi Meet's rtcstats WebSocket, its bound rooms and its counters (issue 25)."""
"""The app's session tabs, clients' and therapists' (the node's metrics count them)."""


@dataclass
class RunningServer:
    """A started server; `close()` stops both listeners."""

    bind: str
    http_port: int
    udp_port: int
    reflector: Reflector
    media: MediaPeerHub
    runner: web.AppRunner
    udp_transport: stamped.StampedEndpoint
    hub: SessionHub | None = None
    """None: no secret, the session hub is off."""
    tls: bool = False
    checks: CheckEndpoints | None = None
    """The browser checks' endpoints, with the store and the deliverer they hold."""
    node_metrics: asyncio.Task | None = None
    """Writes the node's own load (`netcheck_server`) while the node delivers to InfluxDB."""

    @property
    def url(self) -> str:
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"{'https' if self.tls else 'http'}://{host}:{self.http_port}"

    async def close(self) -> None:
        if self.node_metrics is not None:
            self.node_metrics.cancel()
        self.udp_transport.close()
        await self.media.close_all()
        if self.hub is not None:  # before cleanup, which would wait up to a minute for open SSE streams
            await self.hub.close()
        await self.runner.cleanup()
        if self.checks is not None:
            await self.checks.close()


def default_capacity(access: MeasuringAccess) -> Capacity:
    return Capacity(
        access=access,
        av=FairShare("A/V sessions", per_client=AV_SESSIONS_PER_CLIENT, total=MAX_SESSIONS,
                     expected_hold_s=AV_SESSION_EXPECTED_S),
        throughput=FairShare("throughput streams", per_client=THROUGHPUT_STREAMS_PER_CLIENT, total=MAX_STREAMS,
                             expected_hold_s=THROUGHPUT_STREAM_EXPECTED_S),
        cpu=CpuHeadroom(),
    )


def build_app(udp_port: int, hmac_required: bool, media: MediaPeerHub, hub: SessionHub | None = None,
              keys: ClientKeys | None = None, capacity: Capacity | None = None,
              checks: CheckSettings | None = None, trust_proxy: str | None = None,
              browser_turn: BrowserTurn | None = None, body_timeout_s: float = BODY_TIMEOUT_S,
              frame_ancestors: tuple[str, ...] = (), call_origins: tuple[str, ...] = (),
              ) -> tuple[web.Application, CheckEndpoints]:
    """The HTTP API; also the browser checks' endpoints, to be opened (`open()`) and closed by the caller.
    `browser_turn`: the TURN server /v1/info hands to pages, with fresh credentials, when the caller may measure.
    `body_timeout_s`: how long any request's body may take to arrive (refusal.read_body; the hub's own is
    its limits').
    `frame_ancestors`: sites besides the node's own that may frame its pages (`[serve] frame_ancestors`).
    `call_origins`: the clinic's video pages that load web/callstats.js and post their call (CORS, issue 25)."""
    capacity = capacity or default_capacity(MeasuringAccess(None))
    middlewares = [refusals, forwarded_for(trust_proxy)] if trust_proxy else [refusals]
    if frame_ancestors:
        middlewares.append(framed_by(frame_ancestors))
    if call_origins:
        middlewares.insert(0, call_cors(call_origins))
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=middlewares)
    app[BODY_TIMEOUT] = body_timeout_s
    media.routes(app)
    StaticPages().routes(app)
    throughput = ThroughputEndpoints(capacity.access, capacity.throughput)
    throughput.routes(app)
    check_endpoints = CheckEndpoints(checks, capacity.access, media, throughput)
    check_endpoints.routes(app)
    if hub is not None:
        hub.routes(app)
        hub.on_published = check_endpoints.record_session_events  # the session's report reads them
    else:
        register_disabled(app)
    session_tabs = SessionTabs(hub, media, capacity, check_endpoints)
    session_tabs.routes(app)
    app[SESSION_TABS] = session_tabs
    app.on_shutdown.append(lambda _app: session_tabs.close())
    app[SESSION_CALLS] = SessionCalls(hub, check_endpoints)
    app[SESSION_CALLS].routes(app)
    rooms = RoomBindings(hub)
    rooms.routes(app)
    app[RTCSTATS_DOOR] = RtcstatsDoor(app[SESSION_CALLS], rooms, call_origins)
    app[RTCSTATS_DOOR].routes(app)
    SessionPages(hub, capacity, check_endpoints).routes(app)
    info_routes(app, udp_port, hmac_required, hub is not None, keys, capacity, browser_turn,
                page_plan(checks.rates if checks is not None else ServeLimits()))

    async def sample_cpu(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.ensure_future(capacity.cpu.run())  # the node's own CPU and loop lag (headroom.py)
        yield
        task.cancel()

    app.cleanup_ctx.append(sample_cpu)
    return app, check_endpoints


def page_plan(serve: ServeLimits) -> dict[str, float]:
    """/v1/info `browser_check`: how long the check page's steps last (`[serve] page_*`; docs/browser-check.md)."""
    return {"call_watch_s": serve.page_call_watch_s, "voice_s": serve.page_voice_s,
            "speed_phase_s": serve.page_speed_phase_s}


def info_routes(app: web.Application, udp_port: int, hmac_required: bool, sessions: bool, keys: ClientKeys | None,
                capacity: Capacity, browser_turn: BrowserTurn | None, plan: dict[str, float]) -> None:
    """`GET /v1/info` (what this server offers; the browser check page's step lengths, `plan`; for a caller
    who may measure, a UDP key and the pages' TURN server) and `POST /v1/udp/key`."""

    def measuring_caller(request: web.Request) -> Caller | None:
        """Who is asking, when they may measure; None when a token is required and theirs is missing or wrong."""
        try:
            return capacity.access.caller(request)
        except Refusal:
            return None

    def udp_key_fields(request: web.Request) -> dict[str, object]:
        """A key for the requester's address (the TCP connection proves it) and a roaming key for a UDP
        address of its own (a dual-stack client's, proven by a cookie: udp_keys.py), when it may measure."""
        if keys is None or measuring_caller(request) is None:
            return {}
        issued = keys.issue(request.remote or "", time.time())
        return {"udp_key": _b64(issued.key), "udp_key_expiry_min": issued.expiry_min,
                "udp_key_ttl_s": round(issued.ttl_s, 1), "udp_key_id": _b64(issued.key_id),
                "udp_roaming_key": _b64(issued.roaming_key)}

    def ice_server_fields(request: web.Request) -> dict[str, object]:
        """The page's TURN server with credentials of its own, on the same terms as a UDP key: a relay is
        measuring capacity, so under --require-token only a caller with a valid token gets one."""
        if browser_turn is None:
            return {}
        caller = measuring_caller(request)
        if caller is None:
            return {}
        label = caller.claims.session_id if caller.claims is not None else TURN_LABEL
        return {"ice_servers": [browser_turn.ice_server(label, time.time())]}

    async def info(request: web.Request) -> web.Response:
        return web.json_response({
            "service": "netcheck",
            "version": __version__,
            "wire_version": wire.VERSION,
            "udp_port": udp_port,
            "hmac_required": hmac_required,
            "udp_key_required": keys is not None,
            "token_required": capacity.access.require_token,
            "av": True,
            "throughput": True,
            "throughput_ramp_s": RAMP_S,
            "browser_check": plan,
            "sessions": sessions,
            "short_of_cpu_ago_s": _rounded(capacity.cpu.short_ago_s()),
            **udp_key_fields(request),
            **ice_server_fields(request),
        }, headers={"Cache-Control": "no-store"})

    async def udp_key(request: web.Request) -> web.Response:
        capacity.access.caller(request)  # 401 when a token is required and missing or wrong
        return web.json_response(udp_key_fields(request), headers={"Cache-Control": "no-store"})

    app.router.add_get("/v1/info", info)
    app.router.add_post("/v1/udp/key", udp_key)


def settle_collector() -> None:
    """Once the node is up: what it loaded and built at start (modules, the app) is frozen out of the
    cyclic collector, and young collections run after GC_THRESHOLDS[0] allocations. Why: every full
    collection walked all of it, and with 3,000 hub sessions the collector took a fifth of the node's
    core and stopped its loop for up to 230 ms at a time (BENCHMARKS.md, "Session hub capacity")."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def start_server(
    bind: str = "127.0.0.1", http_port: int = 0, udp_port: int = 0, hmac_key: bytes | None = None,
    rate_pps: float = 1000.0, ice: IceSettings = IceSettings(), secret: bytes | None = None,
    hub_limits: HubLimits = HubLimits(), tls: ssl.SSLContext | None = None, require_token: bool = False,
    open_reflector: bool = False, checks: CheckSettings | None = None, hub_url: str | None = None,
    hub_password: str | None = None, trust_proxy: str | None = None, browser_turn: BrowserTurn | None = None,
    node_metrics_every_s: float = NODE_METRICS_EVERY_S, body_timeout_s: float = BODY_TIMEOUT_S,
    frame_ancestors: tuple[str, ...] = (), call_origins: tuple[str, ...] = (),
) -> RunningServer:
    """Bind the UDP reflector and the HTTP API on `bind`; port 0 means any free port.

    With a `secret` the session hub (docs/session-hub.md) is on and the reflector's client keys are
    derived from it (so every node with the same secret verifies them); without one they come from
    a random secret of this process. `require_token`: every measuring endpoint needs a valid token.
    `open_reflector`: also answer untagged datagrams (a LAN or a test bench; never on the internet).
    `checks`: where browser checks are stored (the config's store for `serve`); without it
    `POST /v1/checks` answers 503. Raises StoreError when that store cannot be opened.
    `hub_url`: `redis://HOST:PORT/N` keeps the hub's sessions in Redis, shared by every node using
    it (hub_redis.py; `hub_password` authenticates); None keeps them in this process's memory.
    `trust_proxy`: the load balancer's address (or network): for its requests only, the client's
    address is the last one in X-Forwarded-For (UDP keys, fair shares and check links bind to it).
    `browser_turn`: the TURN server (and the secret of its time-limited credentials) for browser pages.
    `node_metrics_every_s`: how often the node's own load goes to InfluxDB (only when `checks` delivers there).
    `body_timeout_s`: how long a request's body may take to arrive before it is refused (408 `too_slow`).
    `frame_ancestors`: sites besides the node's own that may frame its pages (the clinic's call page).
    `call_origins`: the clinic's video pages whose call the node follows (`serve --call-origin`; CORS).
    """
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    keys = ClientKeys(secret or os.urandom(32))
    access = MeasuringAccess(secret, require_token)
    reflector = Reflector(hmac_key=hmac_key, rate_pps=rate_pps, client_keys=keys, open_reflector=open_reflector)
    transport = await stamped.open_endpoint(reflector, local_addr=(bind, udp_port), family=family)  # kernel arrival stamps
    _enlarge_receive_buffer(transport)
    bound_udp_port = transport.get_extra_info("sockname")[1]
    capacity = default_capacity(access)
    media = MediaPeerHub(ice, access=access, share=capacity.av, cpu=capacity.cpu)
    hub = session_hub(secret, hub_limits, hub_url, hub_password) if secret else None
    app, check_endpoints = build_app(bound_udp_port, hmac_key is not None, media, hub, keys, capacity, checks,
                                     trust_proxy, browser_turn, body_timeout_s, frame_ancestors, call_origins)
    runner = web.AppRunner(app, access_log=None)
    try:
        check_endpoints.open()
        await runner.setup()
        site = web.TCPSite(runner, bind, http_port, ssl_context=tls)
        await site.start()
    except BaseException:
        transport.close()
        await runner.cleanup()
        await check_endpoints.close()
        raise
    bound_http_port = runner.addresses[0][1]
    running = RunningServer(bind, bound_http_port, bound_udp_port, reflector, media, runner, transport, hub,
                            tls is not None, check_endpoints)
    if check_endpoints.delivers and check_endpoints.store is not None:
        origin = Origin(agent=check_endpoints.agent_id, kind="node", site=checks.site if checks else None,
                        server=running.url.split("://", 1)[1])
        sources = NodeSources(hub, reflector, media, check_endpoints.throughput, capacity, app[SESSION_TABS])
        running.node_metrics = asyncio.ensure_future(
            report_node_metrics(check_endpoints, sources, origin, node_metrics_every_s))
    return running


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def forwarded_for(proxy: str) -> Any:
    """A middleware: a request from `proxy` (an address or network) gets the client address that proxy
    appended to X-Forwarded-For, and is marked FROM_TRUSTED_PROXY (then its X-Forwarded-Host and -Proto
    name the page's origin, checks.own_origin); from anyone else these headers are ignored (a client
    can write anything there).

    Raises ValueError when `proxy` is not an address or network.
    """
    trusted = ipaddress.ip_network(proxy, strict=False)

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if _address_in(request.remote, trusted):
            client = _last_forwarded(request.headers.getall("X-Forwarded-For", []))
            if client is not None:
                request = request.clone(remote=client)
            request[FROM_TRUSTED_PROXY] = True
        return await handler(request)

    return middleware


def _address_in(remote: str | None, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address in network


def _last_forwarded(headers: list[str]) -> str | None:
    """The address the trusted proxy appended: the last entry of the last header (earlier ones are the
    client's own claims); None when it is not an IP address."""
    if not headers:
        return None
    last = headers[-1].rsplit(",", 1)[-1].strip()
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return None


def session_hub(secret: bytes, limits: HubLimits, hub_url: str | None, hub_password: str | None) -> SessionHub:
    """The hub over its backend: Redis for a `redis://` or `rediss://` URL (redis-py imported only then)."""
    if hub_url is None:
        return SessionHub(secret, limits)
    from netcheck.server.hub.redis_backend import RedisBackend

    return SessionHub(secret, limits, RedisBackend(hub_url, hub_password, limits))


REFLECTOR_RCVBUF_BYTES = 4 * 1024 * 1024
"""Room for ≈ 5,000 queued probe datagrams (≈ 0.25 s at 20,000 packets/s): a garbage-collection or
scheduling pause of the event loop then delays replies instead of dropping them (BENCHMARKS.md,
reflector capacity). The kernel caps it at net.core.rmem_max."""


def _enlarge_receive_buffer(transport: stamped.StampedEndpoint) -> None:
    sock = transport.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, REFLECTOR_RCVBUF_BYTES)
    except OSError:
        pass  # a platform without it keeps its default: best effort


def tls_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """The HTTP API's TLS: TLS 1.2 or newer, the certificate chain and key from PEM files.

    Raises OSError or ssl.SSLError when they cannot be read or do not match.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    return context
