"""UDP isochronous probe: a stream of small packets at a fixed interval, like an audio call.

Against netcheck's reflector it measures RTT (server turnaround subtracted), IPDV jitter,
RFC 3550 jitter, loss per direction (the reflector reports how many packets it received),
loss bursts, duplicates and reordering.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from netcheck import bounds, stats
from netcheck.net import stamped, wire
from netcheck.errors import UsageError
from netcheck.model import Status
from netcheck.results import UdpResult

RESOLVE_TIMEOUT_S = 2.0
STATS_ATTEMPTS = 3
PROOF_WAITS_S = (0.2, 0.3, 0.5)
"""A roaming key's address proof before the stream: one datagram per wait, ≤ 1 s in all; without an
answer the stream starts anyway (its own answers carry the cookie; a blocked path shows as loss)."""
KEY_EXPIRED_ERROR = "the reflector's key for this address has expired: fetch a fresh one (GET /v1/info)"
MAX_REPLIES_PER_PACKET = 4
"""A hostile or broken reflector may flood duplicates; beyond this many replies to one packet they are ignored."""


@dataclass(frozen=True)
class UdpProbeSettings:
    interval_ms: float = 20.0
    duration_s: float = 3.0
    size_bytes: int = 160
    hmac_key: bytes | None = field(default=None, repr=False)
    """The server's shared key, where the client was given it."""
    client_key: wire.ClientKey | None = None
    """The per-client key the server issued for this address (server_info); used before the shared key."""
    wait_max_s: float = 2.0
    """After the last packet, late answers are waited for 3 × the slowest RTT seen, at most this; with no
    answer at all, this (`[check] udp_wait_max_s`; tests of a path that blocks UDP compress it)."""

    def validate(self) -> None:
        bounds.UDP_INTERVAL_MS.check(self.interval_ms, "interval", f"{self.interval_ms:g} ms")
        bounds.UDP_DURATION_S.check(self.duration_s, "duration", f"{self.duration_s:g} s")
        bounds.UDP_WAIT_MAX_S.check(self.wait_max_s, "wait", f"{self.wait_max_s:g} s")
        if self.duration_s * 1000.0 < self.interval_ms:
            raise UsageError("duration is shorter than one interval")
        low = self.signing().min_size_bytes
        if not low <= self.size_bytes <= wire.MAX_PACKET_BYTES:
            raise UsageError(f"packet size {self.size_bytes} outside {low}..{wire.MAX_PACKET_BYTES} bytes")

    def signing(self) -> wire.Signing:
        return wire.signing(self.hmac_key, self.client_key, self.size_bytes)

    @property
    def packet_count(self) -> int:
        return max(1, round(self.duration_s * 1000.0 / self.interval_ms))


def failed_result(status: Status, packets_sent: int = 0, error: str | None = None) -> UdpResult:
    """A result for a run that got no answer at all."""
    return UdpResult(
        status=status, packets_sent=packets_sent, packets_received=0, rtt_min_ms=None, rtt_mean_ms=None,
        rtt_p50_ms=None, rtt_p95_ms=None, rtt_max_ms=None, jitter_ms=None, jitter_rfc3550_ms=None,
        jitter_up_ms=None, jitter_down_ms=None,
        loss_pct=100.0 if packets_sent else None, loss_up_pct=None, loss_down_pct=None,
        loss_burst_max=packets_sent, duplicates=0, reordered=0, error=error,
    )


class ReplyCollector(asyncio.DatagramProtocol):
    """Records the receive time of every authentic reply of one flow; ignores everything else.

    Also the reach probe's echo check uses it."""

    def __init__(self, flow_id: int, packet_count: int, hmac_key: bytes | None) -> None:
        self.flow_id = flow_id
        self.packet_count = packet_count
        self.hmac_key = hmac_key
        self.echo_replies: list[tuple[int, int, wire.Packet]] = []  # (recv_ns, seq, packet), arrival order
        self.replies_per_seq: dict[int, int] = {}
        self.stats_rx_count: int | None = None
        self.refused = False
        self.key_expired = False
        """The reflector answered that our client key has expired."""
        self.cookie = wire.NO_COOKIE
        """A roaming key's proof of this client's address (the reflector's last challenge gave it)."""
        self.challenged = asyncio.Event()
        self.finished = asyncio.Event()
        """Every packet answered, or the port refused (ICMP): nothing more to wait for."""
        self.stats_back = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple, recv_ns: int | None = None) -> None:
        """`recv_ns`: the kernel's receive stamp (net/stamped.py); without one, now on the loop's clock."""
        if recv_ns is None:
            recv_ns = time.monotonic_ns()
        try:
            packet = wire.decode(data, self.hmac_key)
        except wire.WireError:
            return
        if packet.flow_id != self.flow_id:
            return
        if packet.kind == wire.KIND_ECHO_REPLY and packet.seq < self.packet_count:
            replies_to_seq = self.replies_per_seq.get(packet.seq, 0)
            if replies_to_seq >= MAX_REPLIES_PER_PACKET:
                return
            self.replies_per_seq[packet.seq] = replies_to_seq + 1
            self.echo_replies.append((recv_ns, packet.seq, packet))
            if len(self.replies_per_seq) == self.packet_count:
                self.finished.set()
        elif packet.kind == wire.KIND_STATS_REPLY:
            self.stats_rx_count = packet.server_rx_count
            self.stats_back.set()
        elif packet.kind == wire.KIND_KEY_EXPIRED:
            self.key_expired = True
            self.finished.set()
        elif packet.kind == wire.KIND_ADDRESS_CHALLENGE and packet.flags & wire.FLAG_KEY_ID:
            self.cookie = packet.cookie
            self.challenged.set()

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self.refused = True
            self.finished.set()

    def first_rtts_ms(self, send_ns: list[int]) -> dict[int, float]:
        """RTT of the first reply to each sequence number sent, by sequence number."""
        rtts_ms: dict[int, float] = {}
        for recv_ns, seq, packet in self.echo_replies:
            if seq < len(send_ns) and seq not in rtts_ms:
                rtts_ms[seq] = reply_rtt_ms(recv_ns, send_ns[seq], packet)
        return rtts_ms


def reply_rtt_ms(recv_ns: int, send_ns: int, packet: wire.Packet) -> float:
    """Round trip of one echo, without the time the reflector held the packet."""
    turnaround_ns = max(0, packet.server_send_ns - packet.server_recv_ns)
    return (recv_ns - send_ns - turnaround_ns) / 1e6


class UdpProbe:
    """Probe a netcheck reflector at host:port."""

    name = "udp"

    def __init__(self, host: str, port: int, settings: UdpProbeSettings = UdpProbeSettings()) -> None:
        settings.validate()
        self.host = host
        self.port = port
        self.settings = settings

    async def run(self) -> UdpResult:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM), RESOLVE_TIMEOUT_S
            )
        except (OSError, asyncio.TimeoutError):
            return failed_result(Status.UNREACHABLE)
        family, _, _, _, address = infos[0]
        settings = self.settings
        flow_id = secrets.randbits(64)
        signing = settings.signing()
        collector = ReplyCollector(flow_id, settings.packet_count, signing.key)
        try:
            transport = await stamped.open_endpoint(collector, remote_addr=address[:2], family=family)  # kernel stamps
        except OSError:
            return failed_result(Status.UNREACHABLE)
        try:
            if signing.key_id:
                collector.cookie = PROVEN_COOKIES.get((signing.key_id, address[0]), wire.NO_COOKIE)
                if collector.cookie == wire.NO_COOKIE:
                    await prove_address(transport, collector, signing, flow_id, settings.size_bytes)
            send_ns = await self._send_stream(transport, collector, flow_id)
            await self._wait_for_stragglers(collector, send_ns)
            await self._ask_received_count(transport, collector, flow_id, send_ns)
        finally:
            transport.close()
        if signing.key_id and collector.cookie != wire.NO_COOKIE:
            remember_cookie((signing.key_id, address[0]), collector.cookie)
        return summarise(send_ns, collector)

    async def _send_stream(self, transport: stamped.StampedEndpoint, collector: ReplyCollector,
                           flow_id: int) -> list[int]:
        """Send packet i at start + i × interval (absolute schedule, no drift); return send times."""
        settings = self.settings
        send_ns: list[int] = []
        start_ns = time.monotonic_ns()
        interval_ns = int(settings.interval_ms * 1e6)
        signing = settings.signing()
        for seq in range(settings.packet_count):
            delay_s = (start_ns + seq * interval_ns - time.monotonic_ns()) / 1e9
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            now_ns = time.monotonic_ns()
            transport.sendto(signing.request(wire.KIND_ECHO_REQUEST, flow_id, seq, settings.size_bytes, now_ns,
                                             collector.cookie))
            send_ns.append(now_ns)
        return send_ns

    async def _wait_for_stragglers(self, collector: ReplyCollector, send_ns: list[int]) -> None:
        """Wait for late replies: three times the slowest RTT seen, 0.2 s to `wait_max_s`, from the last send."""
        rtts_ns = [recv - send_ns[seq] for recv, seq, _ in collector.echo_replies]
        grace_s = min(self.settings.wait_max_s, max(0.2, 3.0 * max(rtts_ns, default=int(1e9)) / 1e9))
        remaining_s = (send_ns[-1] - time.monotonic_ns()) / 1e9 + grace_s
        if remaining_s > 0:
            try:
                await asyncio.wait_for(collector.finished.wait(), remaining_s)
            except asyncio.TimeoutError:
                pass

    async def _ask_received_count(
        self, transport: stamped.StampedEndpoint, collector: ReplyCollector, flow_id: int, send_ns: list[int]
    ) -> None:
        """Ask the reflector how many of our packets it received (upstream loss); retried on loss."""
        if not collector.echo_replies:
            return
        rtt_max_s = max(recv - send_ns[seq] for recv, seq, _ in collector.echo_replies) / 1e9
        wait_s = min(0.5, max(0.1, 2.0 * rtt_max_s))
        request = self.settings.signing().request(wire.KIND_STATS_REQUEST, flow_id, 0, self.settings.size_bytes,
                                                  cookie=collector.cookie)
        for _ in range(STATS_ATTEMPTS):
            transport.sendto(request)
            try:
                await asyncio.wait_for(collector.stats_back.wait(), wait_s)
                return
            except asyncio.TimeoutError:
                continue


PROVEN_COOKIES: dict[tuple[bytes, str], bytes] = {}
"""The reflector's cookie for (roaming key id, reflector address), kept for this process: one proof per
key, not per probe. A check's loaded-RTT streams start on a link whose queue is a second long (the
proof's answer would take that second and the stream start late); a cookie gone stale (the client's
address changed) is challenged again and the stream's own answers carry the new one."""
MAX_PROVEN_COOKIES = 64


def remember_cookie(key: tuple[bytes, str], cookie: bytes) -> None:
    PROVEN_COOKIES.pop(key, None)
    PROVEN_COOKIES[key] = cookie
    while len(PROVEN_COOKIES) > MAX_PROVEN_COOKIES:
        PROVEN_COOKIES.pop(next(iter(PROVEN_COOKIES)))


async def prove_address(transport: Any, collector: ReplyCollector, signing: wire.Signing, flow_id: int,
                        size_bytes: int, waits_s: tuple[float, ...] = PROOF_WAITS_S) -> None:
    """A roaming key's first exchange: a stats request (it counts nothing) whose answer is the cookie
    that proves this client's address, so the stream's first packets are answered, not challenged."""
    request = signing.request(wire.KIND_STATS_REQUEST, flow_id, 0, size_bytes)
    for wait_s in waits_s:
        transport.sendto(request)
        try:
            await asyncio.wait_for(collector.challenged.wait(), wait_s)
            return
        except asyncio.TimeoutError:
            if collector.finished.is_set():  # refused, or the key expired: the stream will say so
                return


def summarise(send_ns: list[int], collector: ReplyCollector) -> UdpResult:
    """Turn send times and collected replies into the probe's figures."""
    sent = len(send_ns)
    if collector.key_expired and not collector.echo_replies:
        return failed_result(Status.ERROR, sent, KEY_EXPIRED_ERROR)
    if not collector.echo_replies:
        return failed_result(Status.UNREACHABLE if collector.refused else Status.TIMEOUT, sent)
    echoes = [EchoTiming(seq=seq, rtt_ms=reply_rtt_ms(recv_ns, send_ns[seq], packet),
                         up_delay_ms=(packet.server_recv_ns - send_ns[seq]) / 1e6,
                         down_delay_ms=(recv_ns - packet.server_send_ns) / 1e6,
                         server_rx_count=packet.server_rx_count)
              for recv_ns, seq, packet in collector.echo_replies]
    return summarise_echoes(sent, echoes, collector.stats_rx_count)


@dataclass(frozen=True)
class EchoTiming:
    """One echo reply as the statistics need it: the UDP probe's datagrams and the browser check's
    data channel (netcheck/browser/check_body.py) both become these, so both report by one definition."""

    seq: int
    rtt_ms: float
    """The round trip without the time the server held the request."""
    up_delay_ms: float
    """Server receive time − client send time: one-way delay plus the clocks' constant offset."""
    down_delay_ms: float
    """Client receive time − server send time."""
    server_rx_count: int
    """How many distinct requests the server had received when it answered this one."""


def summarise_echoes(sent: int, echoes: list[EchoTiming], stats_rx_count: int | None) -> UdpResult:
    """The probe's figures from `sent` requests (seqs 0..sent−1) and their replies in arrival order.

    `stats_rx_count`: what the server said it received in all (authoritative); None when the stats
    exchange was lost. Needs at least one echo (a run without any is a failed_result).
    """
    rtt_by_seq: list[float | None] = [None] * sent
    up_delay_by_seq: list[float | None] = [None] * sent
    down_delay_by_seq: list[float | None] = [None] * sent
    rtt_in_arrival_order: list[float] = []
    seqs_in_arrival_order: list[int] = []
    duplicates = 0
    max_rx_count_seen = 0
    for echo in echoes:
        seq = echo.seq
        max_rx_count_seen = max(max_rx_count_seen, echo.server_rx_count)
        if rtt_by_seq[seq] is not None:
            duplicates += 1
            continue
        rtt_by_seq[seq] = echo.rtt_ms
        up_delay_by_seq[seq] = echo.up_delay_ms
        down_delay_by_seq[seq] = echo.down_delay_ms
        rtt_in_arrival_order.append(echo.rtt_ms)
        seqs_in_arrival_order.append(seq)
    received = len(rtt_in_arrival_order)
    # The stats reply is authoritative; if all its attempts were lost, the highest count echoed
    # in a reply is a lower bound of what the reflector received.
    server_rx = stats_rx_count if stats_rx_count is not None else max_rx_count_seen
    server_rx = min(sent, max(server_rx, received))
    return UdpResult(
        status=Status.OK,
        packets_sent=sent,
        packets_received=received,
        rtt_min_ms=min(rtt_in_arrival_order),
        rtt_mean_ms=stats.mean(rtt_in_arrival_order),
        rtt_p50_ms=stats.percentile(rtt_in_arrival_order, 50),
        rtt_p95_ms=stats.percentile(rtt_in_arrival_order, 95),
        rtt_max_ms=max(rtt_in_arrival_order),
        jitter_ms=stats.ipdv_mean_ms(rtt_by_seq),
        jitter_rfc3550_ms=stats.rfc3550_jitter_ms(rtt_in_arrival_order),
        jitter_up_ms=stats.ipdv_mean_ms(up_delay_by_seq),
        jitter_down_ms=stats.ipdv_mean_ms(down_delay_by_seq),
        loss_pct=stats.loss_pct(sent, received),
        loss_up_pct=stats.loss_pct(sent, server_rx),
        loss_down_pct=stats.loss_pct(server_rx, received),
        loss_burst_max=stats.loss_burst_max([rtt is not None for rtt in rtt_by_seq]),
        duplicates=duplicates,
        reordered=stats.count_reordered(seqs_in_arrival_order),
        error=None,
    )
