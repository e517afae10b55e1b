"""`netcheck serve`: the HTTP API and the UDP reflector, started and stopped together."""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass

from aiohttp import web

from netcheck import __version__, wire
from netcheck.av.peer import IceSettings
from netcheck.server.hub import HubLimits, SessionHub, register_disabled
from netcheck.server.media import MediaPeerHub
from netcheck.server.reflector import Reflector
from netcheck.server.throughput import ThroughputEndpoints

MAX_REQUEST_BYTES = 64 * 1024


@dataclass
class RunningServer:
    """A started server; `close()` stops both listeners."""

    bind: str
    http_port: int
    udp_port: int
    reflector: Reflector
    media: MediaPeerHub
    runner: web.AppRunner
    udp_transport: asyncio.DatagramTransport
    hub: SessionHub | None = None
    """None: no secret, the session hub is off."""
    tls: bool = False

    @property
    def url(self) -> str:
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"{'https' if self.tls else 'http'}://{host}:{self.http_port}"

    async def close(self) -> None:
        self.udp_transport.close()
        await self.media.close_all()
        if self.hub is not None:  # before cleanup, which would wait up to a minute for open SSE streams
            await self.hub.close()
        await self.runner.cleanup()


def build_app(udp_port: int, hmac_required: bool, media: MediaPeerHub,
              hub: SessionHub | None = None) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    media.routes(app)
    ThroughputEndpoints().routes(app)
    if hub is not None:
        hub.routes(app)
    else:
        register_disabled(app)

    async def info(_request: web.Request) -> web.Response:
        return web.json_response({
            "service": "netcheck",
            "version": __version__,
            "wire_version": wire.VERSION,
            "udp_port": udp_port,
            "hmac_required": hmac_required,
            "av": True,
            "throughput": True,
            "sessions": hub is not None,
        })

    app.router.add_get("/v1/info", info)
    return app


async def start_server(
    bind: str = "127.0.0.1", http_port: int = 0, udp_port: int = 0, hmac_key: bytes | None = None,
    rate_pps: float = 1000.0, ice: IceSettings = IceSettings(), secret: bytes | None = None,
    hub_limits: HubLimits = HubLimits(), tls: ssl.SSLContext | None = None,
) -> RunningServer:
    """Bind the UDP reflector and the HTTP API on `bind`; port 0 means any free port.

    With a `secret` the session hub (docs/session-hub.md) is on; without one its paths answer 404.
    """
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    reflector = Reflector(hmac_key=hmac_key, rate_pps=rate_pps)
    transport, _ = await loop.create_datagram_endpoint(lambda: reflector, local_addr=(bind, udp_port), family=family)
    _enlarge_receive_buffer(transport)
    bound_udp_port = transport.get_extra_info("sockname")[1]
    media = MediaPeerHub(ice)
    hub = SessionHub(secret, hub_limits) if secret else None
    runner = web.AppRunner(build_app(bound_udp_port, hmac_key is not None, media, hub), access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(runner, bind, http_port, ssl_context=tls)
        await site.start()
    except BaseException:
        transport.close()
        await runner.cleanup()
        raise
    bound_http_port = runner.addresses[0][1]
    return RunningServer(bind, bound_http_port, bound_udp_port, reflector, media, runner, transport, hub, tls is not None)


REFLECTOR_RCVBUF_BYTES = 4 * 1024 * 1024
"""Room for ≈ 5,000 queued probe datagrams (≈ 0.25 s at 20,000 packets/s): a garbage-collection or
scheduling pause of the event loop then delays replies instead of dropping them (BENCHMARKS.md,
reflector capacity). The kernel caps it at net.core.rmem_max."""


def _enlarge_receive_buffer(transport: asyncio.DatagramTransport) -> None:
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
