"""UDP reflector: answers authenticated probe packets, counts what each flow sent it.

Hostile peers are assumed: malformed, oversized or unauthenticated datagrams are dropped
silently, replies are never larger than requests, every source is rate-limited and every
table is bounded. A datagram is authentic when it carries a valid per-client key bound to its
source address (udp_keys.py), or the server's shared HMAC key; an open reflector (`serve
--open-reflector`, for a LAN or a test bench) also answers untagged datagrams. A roaming key (bound
to a key id, for dual-stack clients) is answered in full only from an address its cookie proves;
an unproven address gets the cookie in 80 bytes, never more than it sent.

Times: a request's receive time is the kernel's stamp of its arrival (net/stamped.py), its send
time is read just before the reply is sent; the probe subtracts the difference (turnaround), so a
stall of this node's event loop lengthens the turnaround, never the client's round trip or jitter.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from netcheck.net import wire
from netcheck.server.rate import TokenBuckets
from netcheck.server.udp_keys import ClientKeys, full_expiry_min, share_address

MAX_FLOWS = 4096
MAX_SEQS_PER_FLOW = 65536
FLOW_IDLE_S = 120.0
MAX_SOURCES = 10000
"""Sources whose rate the reflector remembers (server/rate.py forgets the least recent first)."""


@dataclass
class ReflectorCounters:
    """What the reflector did since start; for logs and tests."""

    received: int = 0
    answered: int = 0
    dropped_malformed: int = 0
    dropped_unauthenticated: int = 0
    """No key, a key for another address, a forged or replayed-from-elsewhere tag."""
    dropped_rate_limited: int = 0
    dropped_flow_limit: int = 0
    key_expired: int = 0
    """Answered with KIND_KEY_EXPIRED: the right address, an expired key."""
    challenged: int = 0
    """A roaming key from an address its cookie did not prove: answered with the cookie (80 bytes)."""


@dataclass
class _Flow:
    seqs: set[int] = field(default_factory=set)
    last_seen_s: float = 0.0


class FlowTable:
    """Unique sequence numbers received per (source, flow_id): the upstream half of directional loss."""

    def __init__(self, max_flows: int = MAX_FLOWS, max_seqs: int = MAX_SEQS_PER_FLOW) -> None:
        self.max_flows = max_flows
        self.max_seqs = max_seqs
        self._flows: OrderedDict[tuple[str, int], _Flow] = OrderedDict()

    def record(self, source: str, flow_id: int, seq: int, now_s: float) -> int | None:
        """Count `seq`; return the flow's unique count, or None when the flow is over its bound."""
        flow = self._touch(source, flow_id, now_s)
        if seq not in flow.seqs:
            if len(flow.seqs) >= self.max_seqs:
                return None
            flow.seqs.add(seq)
        return len(flow.seqs)

    def count(self, source: str, flow_id: int, now_s: float) -> int:
        return len(self._touch(source, flow_id, now_s).seqs)

    def _touch(self, source: str, flow_id: int, now_s: float) -> _Flow:
        key = (source, flow_id)
        flow = self._flows.pop(key, None) or _Flow()
        flow.last_seen_s = now_s
        self._flows[key] = flow
        while self._flows:
            oldest_key, oldest = next(iter(self._flows.items()))
            if len(self._flows) <= self.max_flows and now_s - oldest.last_seen_s < FLOW_IDLE_S:
                break
            del self._flows[oldest_key]
        return flow


class Reflector(asyncio.DatagramProtocol):
    """The asyncio protocol behind `netcheck serve`'s UDP port."""

    def __init__(self, hmac_key: bytes | None = None, rate_pps: float = 1000.0, burst_pkts: float = 200.0,
                 client_keys: ClientKeys | None = None, open_reflector: bool = False) -> None:
        self.hmac_key = hmac_key
        self.client_keys = client_keys
        self.open_reflector = open_reflector
        self.limiter = TokenBuckets(rate_pps, burst_pkts, MAX_SOURCES)
        self.flows = FlowTable()
        self.counters = ReflectorCounters()
        self.transport: Any = None
        """The stamped endpoint (net/stamped.py; its `kernel_stamps` says which clock stamps arrivals)."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def error_received(self, exc: Exception) -> None:
        """An ICMP error for an earlier reply: nothing to do, the peer's next packet is answered as ever."""

    def datagram_received(self, data: bytes, addr: tuple, recv_ns: int | None = None) -> None:
        """`recv_ns`: the kernel's receive stamp (net/stamped.py); without one, now on the loop's clock."""
        if recv_ns is None:
            recv_ns = time.monotonic_ns()
        self.counters.received += 1
        reply = self.answer(data, addr[0], recv_ns)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)
            self.counters.answered += 1

    def answer(self, data: bytes, source: str, recv_ns: int, wall_s: float | None = None) -> bytes | None:
        """The reply datagram for `data` from `source`, or None to drop it. No I/O: fuzzable."""
        now_s = recv_ns / 1e9
        if not self.limiter.allow(share_address(source), now_s):  # an IPv6 client's /64 is one source
            self.counters.dropped_rate_limited += 1
            return None
        try:
            header = wire.peek(data)
        except wire.WireError:
            self.counters.dropped_malformed += 1
            return None
        wall_s = time.time() if wall_s is None else wall_s
        key, expired = self._key_for(header, source, wall_s)
        if key is None and not (self.open_reflector and not header.flags & wire.FLAG_CLIENT_KEY):
            self.counters.dropped_unauthenticated += 1
            return None
        try:
            request = wire.decode(data, key)
        except wire.WireError:
            self.counters.dropped_unauthenticated += 1
            return None
        if request.kind not in wire.REQUEST_KINDS:
            self.counters.dropped_malformed += 1
            return None
        if request.flags & wire.FLAG_KEY_ID and self.client_keys is not None:
            cookie = self.client_keys.cookie(request.key_id, full_expiry_min(request.key_expiry_min, wall_s), source)
            if not hmac.compare_digest(cookie, request.cookie):  # unproven: the cookie, in no more bytes than came
                self.counters.challenged += 1
                kind = wire.KIND_KEY_EXPIRED if expired else wire.KIND_ADDRESS_CHALLENGE
                return wire.encode(wire.challenge_to(request, cookie, kind), key)
        if expired:  # the right address with an old key: say so (same size, to that address only)
            self.counters.key_expired += 1
            return wire.encode(wire.key_expired_reply_to(request), key)
        if request.kind == wire.KIND_ECHO_REQUEST:
            rx_count = self.flows.record(source, request.flow_id, request.seq, now_s)
        else:
            rx_count = self.flows.count(source, request.flow_id, now_s)
        if rx_count is None:
            self.counters.dropped_flow_limit += 1
            return None
        reply = wire.reply_to(request, rx_count, recv_ns, time.monotonic_ns())
        encoded = wire.encode(reply, key)
        assert len(encoded) == len(data), "a reply must never be larger than its request"
        return encoded

    def _key_for(self, header: wire.Packet, source: str, wall_s: float) -> tuple[bytes | None, bool]:
        """(the key `header` claims for `source`, whether it expired); (None, False) for no usable key."""
        if header.flags & wire.FLAG_CLIENT_KEY:
            if self.client_keys is None:
                return None, False
            expiry_min = full_expiry_min(header.key_expiry_min, wall_s)
            if header.flags & wire.FLAG_KEY_ID:
                key = self.client_keys.key_for_id(header.key_id, expiry_min)
            else:
                key = self.client_keys.key_for(source, expiry_min)
            return key, self.client_keys.expired(expiry_min, wall_s)
        return self.hmac_key, False
