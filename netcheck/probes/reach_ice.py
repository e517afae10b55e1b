"""The reachability probe's parts that ask ICE servers (a STUN Binding, a TURN Allocate), and what every
part of the probe shares: its outcome, a DNS lookup within the probe's deadline, a short reason.

reach.py runs them beside its own parts (the server's HTTP path, the reflector's echo); each part
ends by the probe's deadline and says in its outcome why it did not reach.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import ssl
import struct
import time
from dataclasses import dataclass

from netcheck.av.peer import IceSettings
from netcheck.results import SubStatus

DNS_TIMEOUT_S = 1.0
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
STUN_MAGIC = 0x2112A442
STUN_BINDING_REQUEST = 0x0001
STUN_BINDING_SUCCESS = 0x0101
STUN_BINDING_ERROR = 0x0111
AUTH_ERROR_CODES = (401, 431)
"""Unauthorized after the nonce round, Integrity Check Failure: the server rejects the credentials."""


@dataclass(frozen=True)
class Outcome:
    """One part of the probe: its status, its time, and in a few words why it did not reach."""

    status: SubStatus
    ms: float | None = None
    note: str | None = None


SKIPPED = Outcome("skipped")


def elapsed_ms(start_s: float) -> float:
    return (time.perf_counter() - start_s) * 1000.0


async def stun_binding(stun: tuple[str, str, int] | None, deadline_s: float) -> Outcome:
    """A STUN Binding request (retransmitted, RFC 8489) to `stun` (scheme, host, port): its RTT."""
    if stun is None:
        return SKIPPED
    _, host, port = stun
    resolved, address = await resolve(host, port, socket.SOCK_DGRAM, "STUN server", deadline_s)
    if address is None:
        return resolved
    loop = asyncio.get_running_loop()
    family, sockaddr = address
    collector = _StunCollector()
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: collector, remote_addr=sockaddr[:2],
                                                           family=family)
    except OSError as error:
        return Outcome("unreachable", note=f"STUN server: {os_reason(error)}")
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
        return Outcome("unreachable", note="STUN server: port closed (ICMP port unreachable)")
    return Outcome("timeout", note=f"STUN server: no answer within {STUN_TIMEOUT_S:g} s")



async def turn_allocation(turn: IceSettings | None, turn_address: tuple[str, str, int] | None,
                          transport_name: str, deadline_s: float) -> Outcome:
    """A TURN Allocate with the long-term credentials of `turn` (at `turn_address`: scheme, host, port)
    over one transport, deleted at once."""
    if turn is None or turn_address is None:
        return SKIPPED
    scheme, host, port = turn_address
    if scheme == "turns" and transport_name == "udp":
        return SKIPPED  # turns: is TURN over TLS; its UDP sibling (DTLS) is not tried
    label = f"TURN over {transport_name.upper()}{' (TLS)' if scheme == 'turns' else ''}"
    kind = socket.SOCK_DGRAM if transport_name == "udp" else socket.SOCK_STREAM
    resolved, address = await resolve(host, port, kind, f"{label} server", deadline_s)
    if address is None:
        return resolved
    for _ in range(TURN_MISMATCH_TRIES - 1):
        outcome, mismatched = await _allocate(turn, transport_name, label, scheme, host, address, deadline_s)
        if not mismatched:
            return outcome
    outcome, _ = await _allocate(turn, transport_name, label, scheme, host, address, deadline_s)
    return outcome

async def _allocate(turn_settings: IceSettings, transport_name: str, label: str, scheme: str, host: str,
                    address: tuple[int, tuple], deadline_s: float) -> tuple[Outcome, bool]:
    """One Allocate from a new client address, deleted at once; and whether it was refused 437
    (an allocation on that address exists already: another address may do)."""
    from aioice import stun, turn

    loop = asyncio.get_running_loop()
    family, sockaddr = address
    server = sockaddr[:2]
    credentials = (server, turn_settings.turn_user, turn_settings.turn_password, TURN_LIFETIME_S, TURN_LIFETIME_S)
    refused = loop.create_future()

    class UdpClient(turn.TurnClientUdpProtocol):
        def error_received(self, exc: Exception) -> None:  # aioice ignores ICMP errors: notice them
            if isinstance(exc, ConnectionRefusedError) and not refused.done():
                refused.set_result(True)

    timeout_s = within(TURN_ALLOCATE_TIMEOUT_S, deadline_s - TURN_DELETE_TIMEOUT_S)
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
        return Outcome("timeout", note=f"{label}: no connection within {timeout_s:.1f} s"), False
    except OSError as error:
        return Outcome("unreachable" if not isinstance(error, ssl.SSLError) else "error",
                        note=f"{label}: {os_reason(error)}"), False
    allocation = asyncio.ensure_future(client.connect())
    try:
        timeout_s -= time.perf_counter() - start_s
        await asyncio.wait({allocation, refused}, timeout=max(0.0, timeout_s),
                           return_when=asyncio.FIRST_COMPLETED)
        if not allocation.done():
            allocation.cancel()
            await asyncio.gather(allocation, return_exceptions=True)
            if refused.done():
                return Outcome("unreachable", note=f"{label}: port closed (ICMP port unreachable)"), False
            return Outcome("timeout",
                            note=f"{label}: no Allocate answer within {TURN_ALLOCATE_TIMEOUT_S:g} s"), False
        try:
            allocation.result()
        except stun.TransactionFailed as failure:
            code = failure.response.error_code
            reason = failure.response.attributes.get("ERROR-CODE", (code, ""))[1]
            if code in AUTH_ERROR_CODES:
                return Outcome("auth_failed", note=f"{label}: credentials rejected ({code} {reason})"), False
            refusal = Outcome("error", note=f"{label}: Allocate refused ({code} {reason})")
            return refusal, code == ALLOCATION_MISMATCH
        except stun.TransactionTimeout:
            return Outcome("timeout", note=f"{label}: no Allocate answer"), False
        except ConnectionError as error:  # aioice: a success response without the relayed address
            return Outcome("error", note=f"{label}: {error}"), False
        allocate_ms = elapsed_ms(start_s)
        try:
            await asyncio.wait_for(client.delete(), TURN_DELETE_TIMEOUT_S)
        except asyncio.TimeoutError:
            pass  # the server frees it when its lifetime ends
        return Outcome("ok", allocate_ms), False
    finally:
        if client.refresh_task is not None:
            client.refresh_task.cancel()
        inner.close()


class _StunCollector(asyncio.DatagramProtocol):
    """Sends Binding requests (RFC 8489, no attributes) and keeps the first answer to any of them."""

    def __init__(self) -> None:
        self.sent_s: dict[bytes, float] = {}
        self.answer: Outcome | None = None
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
            self.answer = Outcome("ok", rtt_ms)
        elif message_type == STUN_BINDING_ERROR:
            self.answer = Outcome("error", note="STUN server: Binding answered with an error")
        else:
            return
        self.finished.set()

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self.refused = True
            self.finished.set()


async def resolve(host: str, port: int, kind: int, what: str,
                   deadline_s: float) -> tuple[Outcome, tuple[int, tuple] | None]:
    """(outcome, (family, sockaddr)); an IP literal takes 0 ms and no lookup."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        return Outcome("ok", 0.0), (family, (host, port))
    loop = asyncio.get_running_loop()
    start_s = time.perf_counter()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=kind), within(DNS_TIMEOUT_S, deadline_s))
    except asyncio.TimeoutError:
        note = f"DNS lookup of the {what} {host!r}: no answer within {DNS_TIMEOUT_S:g} s"
        return Outcome("timeout", note=note), None
    except OSError as error:
        return Outcome("unreachable", note=f"DNS lookup of the {what} {host!r}: {os_reason(error)}"), None
    family, _, _, _, sockaddr = infos[0]
    return Outcome("ok", elapsed_ms(start_s)), (family, sockaddr)


def within(timeout_s: float, deadline_s: float) -> float:
    """`timeout_s`, shortened so as to end by the probe's deadline."""
    return max(0.0, min(timeout_s, deadline_s - time.monotonic()))


def os_reason(error: BaseException) -> str:
    return (getattr(error, "strerror", None) or str(error) or type(error).__name__).lower()
