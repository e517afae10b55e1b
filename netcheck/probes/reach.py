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
import ipaddress
import secrets
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from netcheck import stats
from netcheck.net import wire
from netcheck.av.peer import IceSettings
from netcheck.errors import ConfigError, MeasurementError, UsageError
from netcheck.model import Status
from netcheck.results import ReachResult, SubStatus
from netcheck.probes.udp import ReplyCollector
from netcheck.net.wire import ClientKey

RUN_BUDGET_S = 3.5
"""Every part ends by then (TURN's deallocation may add up to `TURN_DELETE_TIMEOUT_S`)."""
DNS_TIMEOUT_S = 1.0
TCP_TIMEOUT_S = 1.0
TLS_TIMEOUT_S = 1.5
INFO_TIMEOUT_S = 2.0
ECHO_PACKETS = 5
ECHO_INTERVAL_S = 0.1
ECHO_GRACE_S = 0.6
"""How long after the last echo request replies are awaited."""
STUN_RETRANSMIT_AT_S = (0.0, 0.25, 0.75)
STUN_TIMEOUT_S = 1.5
TURN_ALLOCATE_TIMEOUT_S = 2.5
TURN_DELETE_TIMEOUT_S = 0.5
TURN_MISMATCH_TRIES = 3
ALLOCATION_MISMATCH = 437
"""RFC 8656 §7.2: the server already holds an allocation on this client address (a crashed client's,
or one whose port a NAT or this machine reused): pick another address, three at most."""
TURN_LIFETIME_S = 60
"""Asked for in the Allocate; bounds how long an allocation whose deletion is lost lingers on the server."""
DEFAULT_PORTS = {"http": 80, "https": 443, "stun": 3478, "turn": 3478, "turns": 5349}

STUN_MAGIC = 0x2112A442
STUN_BINDING_REQUEST = 0x0001
STUN_BINDING_SUCCESS = 0x0101
STUN_BINDING_ERROR = 0x0111
LAZY_IMPORTS = ("aiohttp", "aioice.stun", "aioice.turn", "netcheck.net.server_info")
AUTH_ERROR_CODES = (401, 431)
"""Unauthorized after the nonce round, Integrity Check Failure: the server rejects the credentials."""


@dataclass(frozen=True)
class _Outcome:
    status: SubStatus
    ms: float | None = None
    note: str | None = None


_SKIPPED = _Outcome("skipped")


@dataclass(frozen=True)
class _EchoOutcome(_Outcome):
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


def _elapsed_ms(start_s: float) -> float:
    return (time.perf_counter() - start_s) * 1000.0


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
            self.turn_address = parse_ice_url(turn.turn_url, ("turn", "turns"))
        else:
            self.turn = None
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
            http_path, self._udp_echo(deadline_s, http_path), self._stun(deadline_s),
            self._turn("udp", deadline_s), self._turn("tcp", deadline_s))
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

    async def _http_path(self, deadline_s: float) -> tuple[_Outcome, _Outcome, _Outcome]:
        dns, address = await _resolve(self.host, self.http_port, socket.SOCK_STREAM, "server", deadline_s)
        if address is None:
            return dns, _SKIPPED, _SKIPPED
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
            return dns, tcp, _SKIPPED
        return dns, tcp, await self._tls_handshake(sock, deadline_s)

    async def _tcp_connect(self, sock: socket.socket, sockaddr: tuple, deadline_s: float) -> _Outcome:
        loop = asyncio.get_running_loop()
        start_s = time.perf_counter()
        try:
            await asyncio.wait_for(loop.sock_connect(sock, sockaddr), _within(TCP_TIMEOUT_S, deadline_s))
        except asyncio.TimeoutError:
            return _Outcome("timeout", note=f"TCP connect to the server: no answer within {TCP_TIMEOUT_S:g} s")
        except OSError as error:
            return _Outcome("unreachable", note=f"TCP connect to the server: {_os_reason(error)}")
        return _Outcome("ok", _elapsed_ms(start_s))

    async def _tls_handshake(self, sock: socket.socket, deadline_s: float) -> _Outcome:
        """A TLS handshake over the connected `sock`, which it takes over (and closes)."""
        loop = asyncio.get_running_loop()
        start_s = time.perf_counter()
        timeout_s = _within(TLS_TIMEOUT_S, deadline_s)
        try:
            transport, _ = await asyncio.wait_for(loop.create_connection(
                asyncio.Protocol, sock=sock, ssl=ssl.create_default_context(), server_hostname=self.host,
                ssl_handshake_timeout=max(0.01, timeout_s)), timeout_s)
        except asyncio.TimeoutError:
            return _Outcome("timeout", note=f"TLS handshake: not done within {TLS_TIMEOUT_S:g} s")
        except ssl.SSLCertVerificationError as error:
            return _Outcome("error", note=f"TLS handshake: certificate not trusted ({error.verify_message})")
        except (ssl.SSLError, OSError) as error:
            return _Outcome("error", note=f"TLS handshake: {_os_reason(error)}")
        handshake_ms = _elapsed_ms(start_s)
        transport.abort()  # closes `sock` too: nothing is sent over this connection
        return _Outcome("ok", handshake_ms)

    # --- the UDP reflector --------------------------------------------------------------------

    async def _udp_echo(self, deadline_s: float, http_path: asyncio.Future) -> _EchoOutcome:
        from netcheck.net.server_info import fetch_server_info, reflector_of

        target = self.udp_target
        if target is None:
            try:
                timeout_s = _within(INFO_TIMEOUT_S, deadline_s - ECHO_INTERVAL_S * ECHO_PACKETS - ECHO_GRACE_S)
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
        resolved, address = await _resolve(target[0], target[1], socket.SOCK_DGRAM, "UDP reflector", deadline_s)
        if address is None:
            return _EchoOutcome("unreachable", note=resolved.note)
        return await self._echo(address, deadline_s, client_key)

    async def _echo(self, address: tuple[int, tuple], deadline_s: float,
                    client_key: ClientKey | None) -> _EchoOutcome:
        loop = asyncio.get_running_loop()
        family, sockaddr = address
        flow_id = secrets.randbits(64)
        key, flags, key_expiry_min = wire.signing(self.hmac_key, client_key)
        collector = ReplyCollector(flow_id, ECHO_PACKETS, key)
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: collector, remote_addr=sockaddr[:2],
                                                               family=family)
        except OSError as error:
            return _EchoOutcome("unreachable", note=f"UDP reflector: {_os_reason(error)}")
        size_bytes = wire.min_size_bytes(key is not None)
        send_ns: list[int] = []
        try:
            start_s = time.monotonic()
            for seq in range(ECHO_PACKETS):
                delay_s = start_s + seq * ECHO_INTERVAL_S - time.monotonic()
                if delay_s > 0:
                    await asyncio.sleep(delay_s)
                send_ns.append(time.monotonic_ns())
                packet = wire.Packet(kind=wire.KIND_ECHO_REQUEST, flow_id=flow_id, seq=seq, size_bytes=size_bytes,
                                     client_send_ns=send_ns[-1], flags=flags, key_expiry_min=key_expiry_min)
                transport.sendto(wire.encode(packet, key))
                if collector.finished.is_set():
                    break
            try:
                await asyncio.wait_for(collector.finished.wait(), _within(ECHO_GRACE_S, deadline_s))
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

    # --- STUN ---------------------------------------------------------------------------------

    async def _stun(self, deadline_s: float) -> _Outcome:
        if self.stun is None:
            return _SKIPPED
        _, host, port = self.stun
        resolved, address = await _resolve(host, port, socket.SOCK_DGRAM, "STUN server", deadline_s)
        if address is None:
            return resolved
        loop = asyncio.get_running_loop()
        family, sockaddr = address
        collector = _StunCollector()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: collector, remote_addr=sockaddr[:2],
                                                               family=family)
        except OSError as error:
            return _Outcome("unreachable", note=f"STUN server: {_os_reason(error)}")
        try:
            start_s = time.monotonic()
            end_s = min(start_s + STUN_TIMEOUT_S, deadline_s)
            for at_s in STUN_RETRANSMIT_AT_S:
                # a fresh transaction per attempt, so that the RTT of the one answered is unambiguous
                if await collector.wait_until_finished(min(start_s + at_s, end_s) - time.monotonic()):
                    break
                collector.send_request(transport)
            await collector.wait_until_finished(end_s - time.monotonic())
        finally:
            transport.close()
        if collector.answer is not None:
            return collector.answer
        if collector.refused:
            return _Outcome("unreachable", note="STUN server: port closed (ICMP port unreachable)")
        return _Outcome("timeout", note=f"STUN server: no answer within {STUN_TIMEOUT_S:g} s")

    # --- TURN ---------------------------------------------------------------------------------

    async def _turn(self, transport_name: str, deadline_s: float) -> _Outcome:
        """A TURN Allocate with the long-term credentials over one transport, deleted at once."""
        if self.turn is None:
            return _SKIPPED
        scheme, host, port = self.turn_address
        if scheme == "turns" and transport_name == "udp":
            return _SKIPPED  # turns: is TURN over TLS; its UDP sibling (DTLS) is not tried
        label = f"TURN over {transport_name.upper()}{' (TLS)' if scheme == 'turns' else ''}"
        kind = socket.SOCK_DGRAM if transport_name == "udp" else socket.SOCK_STREAM
        resolved, address = await _resolve(host, port, kind, f"{label} server", deadline_s)
        if address is None:
            return resolved
        for _ in range(TURN_MISMATCH_TRIES - 1):
            outcome, mismatched = await self._allocate(transport_name, label, scheme, host, address, deadline_s)
            if not mismatched:
                return outcome
        outcome, _ = await self._allocate(transport_name, label, scheme, host, address, deadline_s)
        return outcome

    async def _allocate(self, transport_name: str, label: str, scheme: str, host: str,
                        address: tuple[int, tuple], deadline_s: float) -> tuple[_Outcome, bool]:
        """One Allocate from a new client address, deleted at once; and whether it was refused 437
        (an allocation on that address exists already: another address may do)."""
        from aioice import stun, turn

        assert self.turn is not None
        loop = asyncio.get_running_loop()
        family, sockaddr = address
        server = sockaddr[:2]
        credentials = (server, self.turn.turn_user, self.turn.turn_password, TURN_LIFETIME_S, TURN_LIFETIME_S)
        refused = loop.create_future()

        class UdpClient(turn.TurnClientUdpProtocol):
            def error_received(self, exc: Exception) -> None:  # aioice ignores ICMP errors: notice them
                if isinstance(exc, ConnectionRefusedError) and not refused.done():
                    refused.set_result(True)

        timeout_s = _within(TURN_ALLOCATE_TIMEOUT_S, deadline_s - TURN_DELETE_TIMEOUT_S)
        start_s = time.perf_counter()
        try:
            if transport_name == "udp":
                inner, client = await loop.create_datagram_endpoint(
                    lambda: UdpClient(*credentials), remote_addr=server, family=family)
            else:
                tls = ssl.create_default_context() if scheme == "turns" else None
                inner, client = await asyncio.wait_for(loop.create_connection(
                    lambda: turn.TurnClientTcpProtocol(*credentials), host=server[0], port=server[1],
                    family=family, ssl=tls, server_hostname=host if tls else None), timeout_s)
        except asyncio.TimeoutError:
            return _Outcome("timeout", note=f"{label}: no connection within {timeout_s:.1f} s"), False
        except OSError as error:
            return _Outcome("unreachable" if not isinstance(error, ssl.SSLError) else "error",
                            note=f"{label}: {_os_reason(error)}"), False
        allocation = asyncio.ensure_future(client.connect())
        try:
            timeout_s -= time.perf_counter() - start_s
            await asyncio.wait({allocation, refused}, timeout=max(0.0, timeout_s),
                               return_when=asyncio.FIRST_COMPLETED)
            if not allocation.done():
                allocation.cancel()
                await asyncio.gather(allocation, return_exceptions=True)
                if refused.done():
                    return _Outcome("unreachable", note=f"{label}: port closed (ICMP port unreachable)"), False
                return _Outcome("timeout",
                                note=f"{label}: no Allocate answer within {TURN_ALLOCATE_TIMEOUT_S:g} s"), False
            try:
                allocation.result()
            except stun.TransactionFailed as failure:
                code = failure.response.error_code
                reason = failure.response.attributes.get("ERROR-CODE", (code, ""))[1]
                if code in AUTH_ERROR_CODES:
                    return _Outcome("auth_failed", note=f"{label}: credentials rejected ({code} {reason})"), False
                refusal = _Outcome("error", note=f"{label}: Allocate refused ({code} {reason})")
                return refusal, code == ALLOCATION_MISMATCH
            except stun.TransactionTimeout:
                return _Outcome("timeout", note=f"{label}: no Allocate answer"), False
            except ConnectionError as error:  # aioice: a success response without the relayed address
                return _Outcome("error", note=f"{label}: {error}"), False
            allocate_ms = _elapsed_ms(start_s)
            try:
                await asyncio.wait_for(client.delete(), TURN_DELETE_TIMEOUT_S)
            except asyncio.TimeoutError:
                pass  # the server frees it when its lifetime ends
            return _Outcome("ok", allocate_ms), False
        finally:
            if client.refresh_task is not None:
                client.refresh_task.cancel()
            inner.close()


class _StunCollector(asyncio.DatagramProtocol):
    """Sends Binding requests (RFC 8489, no attributes) and keeps the first answer to any of them."""

    def __init__(self) -> None:
        self.sent_s: dict[bytes, float] = {}
        self.answer: _Outcome | None = None
        self.refused = False
        self.finished = asyncio.Event()
        """An answer came, or the port refused (ICMP)."""

    def send_request(self, transport: asyncio.DatagramTransport) -> None:
        transaction_id = secrets.token_bytes(12)
        self.sent_s[transaction_id] = time.perf_counter()
        transport.sendto(struct.pack("!HHI", STUN_BINDING_REQUEST, 0, STUN_MAGIC) + transaction_id)

    async def wait_until_finished(self, timeout_s: float) -> bool:
        if timeout_s > 0 and not self.finished.is_set():
            try:
                await asyncio.wait_for(self.finished.wait(), timeout_s)
            except asyncio.TimeoutError:
                pass
        return self.finished.is_set()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        received_s = time.perf_counter()
        if self.answer is not None or len(data) < 20:
            return
        message_type, _, magic = struct.unpack_from("!HHI", data)
        sent_s = self.sent_s.get(data[8:20])
        if magic != STUN_MAGIC or sent_s is None:
            return
        rtt_ms = (received_s - sent_s) * 1000.0
        if message_type == STUN_BINDING_SUCCESS:
            self.answer = _Outcome("ok", rtt_ms)
        elif message_type == STUN_BINDING_ERROR:
            self.answer = _Outcome("error", note="STUN server: Binding answered with an error")
        else:
            return
        self.finished.set()

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self.refused = True
            self.finished.set()


async def _resolve(host: str, port: int, kind: int, what: str,
                   deadline_s: float) -> tuple[_Outcome, tuple[int, tuple] | None]:
    """(outcome, (family, sockaddr)); an IP literal takes 0 ms and no lookup."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        return _Outcome("ok", 0.0), (family, (host, port))
    loop = asyncio.get_running_loop()
    start_s = time.perf_counter()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=kind), _within(DNS_TIMEOUT_S, deadline_s))
    except asyncio.TimeoutError:
        note = f"DNS lookup of the {what} {host!r}: no answer within {DNS_TIMEOUT_S:g} s"
        return _Outcome("timeout", note=note), None
    except OSError as error:
        return _Outcome("unreachable", note=f"DNS lookup of the {what} {host!r}: {_os_reason(error)}"), None
    family, _, _, _, sockaddr = infos[0]
    return _Outcome("ok", _elapsed_ms(start_s)), (family, sockaddr)


def _within(timeout_s: float, deadline_s: float) -> float:
    """`timeout_s`, shortened so as to end by the probe's deadline."""
    return max(0.0, min(timeout_s, deadline_s - time.monotonic()))


def _os_reason(error: BaseException) -> str:
    return (getattr(error, "strerror", None) or str(error) or type(error).__name__).lower()
