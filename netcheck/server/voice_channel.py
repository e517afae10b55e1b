"""The voice-path probe over a WebRTC data channel (docs/browser-check.md): parse, answer, count. Pure.

The page sends a 48-byte echo request every 20 ms on an unordered channel without retransmissions
("netcheck-voice"); the server answers each at once with a message of the same size, stamped with
its monotonic clock, and counts the distinct sequence numbers it received — the upstream count the
UDP reflector gives the CLI. Anything malformed, out of range or beyond the rate is ignored, never
answered: a hostile page gets no more bytes than it sends, and no more than 100 answers a second.
The server also keeps its own log of what arrived, so that a posted check's figures can be held
against what the server itself saw (netcheck/browser/check_body.py).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

from netcheck.server.rate import TokenBuckets

LABEL = "netcheck-voice"
MESSAGE_BYTES = 48
MAGIC = b"NV"
VERSION = 1
KIND_ECHO_REQUEST = 1
KIND_ECHO_REPLY = 2
KIND_STATS_REQUEST = 3
KIND_STATS_REPLY = 4
MAX_SEQ = 65536
"""Sequence numbers are below this: 50 a second for 21 minutes, far beyond a check."""
MAX_MESSAGES_PER_S = 100.0
"""Twice the page's rate: room for a burst the channel delivers at once, and for stats requests."""
LAYOUT = struct.Struct(">2sBBII4xddd8x")
assert LAYOUT.size == MESSAGE_BYTES


@dataclass(frozen=True)
class VoiceMessage:
    kind: int
    seq: int
    server_rx_count: int
    client_send_ms: float
    """The page's performance.now() at sending, echoed untouched."""
    server_recv_ms: float = 0.0
    """The server's monotonic clock when the request arrived."""
    server_send_ms: float = 0.0


def decode(data: bytes) -> VoiceMessage | None:
    """A well-formed message, or None for anything the contract says to ignore (size, magic, version,
    kind, seq ≥ 65536, a client time that is not a finite number)."""
    if not isinstance(data, (bytes, bytearray)) or len(data) != MESSAGE_BYTES:
        return None
    magic, version, kind, seq, rx_count, client_send_ms, server_recv_ms, server_send_ms = LAYOUT.unpack(data)
    if magic != MAGIC or version != VERSION or kind not in (1, 2, 3, 4) or seq >= MAX_SEQ:
        return None
    if not math.isfinite(client_send_ms):
        return None
    return VoiceMessage(kind, seq, rx_count, client_send_ms, server_recv_ms, server_send_ms)


def encode(message: VoiceMessage) -> bytes:
    return LAYOUT.pack(MAGIC, VERSION, message.kind, message.seq, message.server_rx_count,
                       message.client_send_ms, message.server_recv_ms, message.server_send_ms)


@dataclass(frozen=True)
class Arrival:
    """One echo request as the server received it."""

    seq: int
    server_recv_ms: float
    server_send_ms: float


@dataclass
class VoiceChannelLog:
    """One channel's state: the distinct sequence numbers received, the arrivals (first of each seq,
    in order), and a token bucket for the rate limit. Bounded: at most MAX_SEQ entries of each."""

    seqs: set[int] = field(default_factory=set)
    arrivals: list[Arrival] = field(default_factory=list)
    ignored: int = 0
    """Messages not answered: malformed, replies sent to the server, or beyond the rate."""
    _rate: TokenBuckets = field(default_factory=lambda: TokenBuckets(MAX_MESSAGES_PER_S, MAX_MESSAGES_PER_S, 1))

    @property
    def rx_count(self) -> int:
        return len(self.seqs)

    def first_arrivals(self) -> dict[int, Arrival]:
        return {arrival.seq: arrival for arrival in self.arrivals}

    def answer(self, data: bytes, now_ms: float, send_ms: float | None = None) -> bytes | None:
        """The reply to `data` received at `now_ms` (server monotonic ms), or None to ignore it.

        `send_ms`: the clock when the reply leaves (default `now_ms`); the page removes the
        server's turnaround (send − receive) from its round trip, as the UDP probe does.
        """
        if not self._rate.allow(LABEL, now_ms / 1000.0):
            self.ignored += 1
            return None
        message = decode(data)
        if message is None or message.kind not in (KIND_ECHO_REQUEST, KIND_STATS_REQUEST):
            self.ignored += 1
            return None
        send_ms = now_ms if send_ms is None else max(now_ms, send_ms)
        if message.kind == KIND_ECHO_REQUEST:
            if message.seq not in self.seqs:
                self.seqs.add(message.seq)
                self.arrivals.append(Arrival(message.seq, now_ms, send_ms))
            kind = KIND_ECHO_REPLY
        else:
            kind = KIND_STATS_REPLY
        return encode(VoiceMessage(kind, message.seq, self.rx_count, message.client_send_ms, now_ms, send_ms))
