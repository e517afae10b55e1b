"""Reachability probe: can this network reach the clinic's server, and by which paths?

Each part has its own status and a short timeout, and they run side by side:

    DNS → TCP connect → TLS handshake      to the server's HTTP(S) port
    a few netcheck echo packets            to the UDP reflector (is UDP blocked?)
    a STUN Binding request                 to the STUN server, if one is configured
    a TURN Allocate over UDP and over TCP  to the TURN server, if one is configured

A part's status is one of `SUB_STATUSES`. `skipped` means it was not attempted: not configured,
not applicable (TLS for http:, TURN over UDP for turns:), or a step it needs failed first (no
TCP connect without an address). The whole probe takes at most about `RUN_BUDGET_S`.
"""

from __future__ import annotations

import asyncio
import importlib
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from netcheck import stats
from netcheck.av.peer import IceSettings
from netcheck.errors import ConfigError, MeasurementError, UsageError
from netcheck.model import Status
from netcheck.net import wire
from netcheck.net.wire import ClientKey
from netcheck.probes.reach_ice import (
    SKIPPED, Outcome, elapsed_ms, os_reason, resolve, stun_binding, turn_allocation, within,
)
from netcheck.probes.udp import ReplyCollector, prove_address
from netcheck.results import ReachResult

RUN_BUDGET_S = 3.5
"""Every part ends by then (TURN's deallocation may add up to `reach_ice.TURN_DELETE_TIMEOUT_S`)."""
TCP_TIMEOUT_S = 1.0
TLS_TIMEOUT_S = 1.5
INFO_TIMEOUT_S = 2.0
ECHO_PACKETS = 5
ECHO_INTERVAL_S = 0.1
ECHO_GRACE_S = 0.6
"""How long after the last echo request replies are awaited."""
PROOF_WAITS_S = (0.1, 0.2)
"""A roaming key's address proof before the echoes (udp.prove_address), kept short: a blocked port
costs 0.3 s more; on a path slower than that the first echoes are challenged and count as lost."""
DEFAULT_PORTS = {"http": 80, "https": 443, "stun": 3478, "turn": 3478, "turns": 5349}
LAZY_IMPORTS = ("aiohttp", "aioice.stun", "aioice.turn", "netcheck.net.server_info")


@dataclass(frozen=True)
class _EchoOutcome(Outcome):
    sent: int = 0
    received: int = 0


def parse_ice_url(url: str, schemes: tuple[str, ...]) -> tuple[str, str, int]:
    """(scheme, host, port) of stun:HOST[:PORT] or turn(s):HOST[:PORT][?transport=…]; IPv6 in brackets."""
    scheme, _, rest = url.partition(":")
    rest = rest.split("?", 1)[0]
    if scheme not in schemes or not rest or rest.startswith("//"):
        raise UsageError(f"bad ICE server URL {url!r}: use {schemes[0]}:HOST:PORT")
    if rest.startswith("["):
        host, _, port_text = rest[1:].partition("]")
        port_text = port_text.removeprefix(":")
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    else:
        host, port_text = rest, ""
    try:
        port = int(port_text) if port_text else DEFAULT_PORTS[scheme]
    except ValueError:
        raise UsageError(f"bad port in ICE server URL {url!r}") from None
    if not host or not 1 <= port <= 65535:
        raise UsageError(f"bad ICE server URL {url!r}: use {schemes[0]}:HOST:PORT")
    return scheme, host, port


class ReachProbe:
    """Which paths to a netcheck server (and its STUN/TURN servers) this network lets through."""

    name = "reach"

    def __init__(self, server_url: str, udp_target: tuple[str, int] | None, stun_url: str | None,
                 turn: IceSettings | None, hmac_key: bytes | None = None, client_key: ClientKey | None = None,
                 token: str | None = None) -> None:
        """`udp_target` and `client_key`: the reflector and this client's key for it, when the caller
        has them; otherwise the probe asks the server (with `token`, for one that requires it)."""
        parts = urlsplit(server_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"bad server URL {server_url!r}: use http(s)://HOST[:PORT]")
        try:
            self.http_port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise UsageError(f"bad port in server URL {server_url!r}") from None
        self.server_url = server_url.rstrip("/")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.udp_target = udp_target
        self.stun = parse_ice_url(stun_url, ("stun",)) if stun_url else None
        if turn is not None and turn.turn_url:
            turn.validate()
            self.turn: IceSettings | None = turn
            self.turn_address: tuple[str, str, int] | None = parse_ice_url(turn.turn_url, ("turn", "turns"))
        else:
            self.turn, self.turn_address = None, None
        self.hmac_key = hmac_key
        self.client_key = client_key
        self.token = token

    async def run(self) -> ReachResult:
        # Imported here, not at the top (import cost of every netcheck command), and before any
        # clock starts: a first import blocks the event loop, on which every part's timer runs.
        for module in LAZY_IMPORTS:
            importlib.import_module(module)
        deadline_s = time.monotonic() + RUN_BUDGET_S
        http_path = asyncio.ensure_future(self._http_path(deadline_s))  # the UDP part may wait for it
        (dns, tcp, tls), echo, stun, turn_udp, turn_tcp = await asyncio.gather(
            http_path, self._udp_echo(deadline_s, http_path), stun_binding(self.stun, deadline_s),
            turn_allocation(self.turn, self.turn_address, "udp", deadline_s),
            turn_allocation(self.turn, self.turn_address, "tcp", deadline_s))
        notes = [outcome.note for outcome in (dns, tcp, tls, echo, stun, turn_udp, turn_tcp) if outcome.note]
        return ReachResult(
            status=Status.OK if tcp.status == "ok" else Status.UNREACHABLE,
            dns_status=dns.status, dns_ms=dns.ms, tcp_status=tcp.status, tcp_connect_ms=tcp.ms,
            tls_status=tls.status, tls_handshake_ms=tls.ms,
            udp_status=echo.status, udp_rtt_ms=echo.ms, udp_packets_sent=echo.sent,
            udp_packets_received=echo.received,
            stun_status=stun.status, stun_rtt_ms=stun.ms,
            turn_udp_status=turn_udp.status, turn_udp_ms=turn_udp.ms,
            turn_tcp_status=turn_tcp.status, turn_tcp_ms=turn_tcp.ms,
            error="; ".join(notes) or None,
        )

    # --- the server's HTTP port ---------------------------------------------------------------

    async def _http_path(self, deadline_s: float) -> tuple[Outcome, Outcome, Outcome]:
        dns, address = await resolve(self.host, self.http_port, socket.SOCK_STREAM, "server", deadline_s)
        if address is None:
            return dns, SKIPPED, SKIPPED
        family, sockaddr = address
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            tcp = await self._tcp_connect(sock, sockaddr, deadline_s)
        except BaseException:
            sock.close()
            raise
        if tcp.status != "ok" or not self.https:
            sock.close()
            return dns, tcp, SKIPPED
        return dns, tcp, await self._tls_handshake(sock, deadline_s)

    async def _tcp_connect(self, sock: socket.socket, sockaddr: tuple, deadline_s: float) -> Outcome:
        loop = asyncio.get_running_loop()
        start_s = time.perf_counter()
        try:
            await asyncio.wait_for(loop.sock_connect(sock, sockaddr), within(TCP_TIMEOUT_S, deadline_s))
        except asyncio.TimeoutError:
            return Outcome("timeout", note=f"TCP connect to the server: no answer within {TCP_TIMEOUT_S:g} s")
        except OSError as error:
            return Outcome("unreachable", note=f"TCP connect to the server: {os_reason(error)}")
        return Outcome("ok", elapsed_ms(start_s))

    async def _tls_handshake(self, sock: socket.socket, deadline_s: float) -> Outcome:
        """A TLS handshake over the connected `sock`, which it takes over (and closes)."""
        loop = asyncio.get_running_loop()
        start_s = time.perf_counter()
        timeout_s = within(TLS_TIMEOUT_S, deadline_s)
        try:
            transport, _ = await asyncio.wait_for(loop.create_connection(
                asyncio.Protocol, sock=sock, ssl=ssl.create_default_context(), server_hostname=self.host,
                ssl_handshake_timeout=max(0.01, timeout_s)), timeout_s)
        except asyncio.TimeoutError:
            return Outcome("timeout", note=f"TLS handshake: not done within {TLS_TIMEOUT_S:g} s")
        except ssl.SSLCertVerificationError as error:
            return Outcome("error", note=f"TLS handshake: certificate not trusted ({error.verify_message})")
        except (ssl.SSLError, OSError) as error:
            return Outcome("error", note=f"TLS handshake: {os_reason(error)}")
        handshake_ms = elapsed_ms(start_s)
        transport.abort()  # closes `sock` too: nothing is sent over this connection
        return Outcome("ok", handshake_ms)

    # --- the UDP reflector --------------------------------------------------------------------

    async def _udp_echo(self, deadline_s: float, http_path: asyncio.Future) -> _EchoOutcome:
        from netcheck.net.server_info import fetch_server_info, reflector_of  # aiohttp: see LAZY_IMPORTS

        target = self.udp_target
        if target is None:
            try:
                timeout_s = within(INFO_TIMEOUT_S, deadline_s - ECHO_INTERVAL_S * ECHO_PACKETS - ECHO_GRACE_S)
                info = await asyncio.wait_for(fetch_server_info(self.server_url, self.token), timeout_s)
            except (MeasurementError, asyncio.TimeoutError) as error:
                _, tcp, _ = await http_path
                reason = str(error) or f"no answer within {timeout_s:.1f} s"
                return _EchoOutcome("unreachable" if tcp.status != "ok" else "error",
                                    note=f"UDP reflector's port (GET /v1/info): {reason}")
            try:
                reflector = reflector_of(self.server_url, info, self.hmac_key, self.token)
            except ConfigError as error:
                return _EchoOutcome("error", note=f"UDP reflector: {error}")
            target, client_key = (reflector.host, reflector.port), reflector.client_key
        else:
            client_key = self.client_key
        resolved, address = await resolve(target[0], target[1], socket.SOCK_DGRAM, "UDP reflector", deadline_s)
        if address is None:
            return _EchoOutcome("unreachable", note=resolved.note)
        return await self._echo(address, deadline_s, client_key)

    async def _echo(self, address: tuple[int, tuple], deadline_s: float,
                    client_key: ClientKey | None) -> _EchoOutcome:
        loop = asyncio.get_running_loop()
        family, sockaddr = address
        flow_id = secrets.randbits(64)
        signing = wire.signing(self.hmac_key, client_key)
        collector = ReplyCollector(flow_id, ECHO_PACKETS, signing.key)
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: collector, remote_addr=sockaddr[:2],
                                                               family=family)
        except OSError as error:
            return _EchoOutcome("unreachable", note=f"UDP reflector: {os_reason(error)}")
        size_bytes = signing.min_size_bytes
        send_ns: list[int] = []
        try:
            if signing.key_id:
                await prove_address(transport, collector, signing, flow_id, size_bytes, PROOF_WAITS_S)
            start_s = time.monotonic()
            for seq in range(ECHO_PACKETS):
                delay_s = start_s + seq * ECHO_INTERVAL_S - time.monotonic()
                if delay_s > 0:
                    await asyncio.sleep(delay_s)
                send_ns.append(time.monotonic_ns())
                transport.sendto(signing.request(wire.KIND_ECHO_REQUEST, flow_id, seq, size_bytes, send_ns[-1],
                                                 collector.cookie))
                if collector.finished.is_set():
                    break
            try:
                await asyncio.wait_for(collector.finished.wait(), within(ECHO_GRACE_S, deadline_s))
            except asyncio.TimeoutError:
                pass
        finally:
            transport.close()
        rtts_ms = list(collector.first_rtts_ms(send_ns).values())
        if rtts_ms:
            return _EchoOutcome("ok", stats.percentile(rtts_ms, 50), sent=len(send_ns), received=len(rtts_ms))
        if collector.refused:
            return _EchoOutcome("unreachable", note="UDP reflector: port closed (ICMP port unreachable)",
                                sent=len(send_ns))
        return _EchoOutcome("blocked", note=f"UDP reflector: none of {len(send_ns)} packets answered",
                            sent=len(send_ns))
