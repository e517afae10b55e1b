"""The UDP probe's wire format, shared by the probe and the reflector.

Version 1, big-endian, 48-byte header, then zero padding, then an optional 16-byte HMAC tag:

    magic "NC" | version u8 | kind u8 | flags u8 | reserved 3 bytes
    flow_id u64 | seq u32 | server_rx_count u32
    client_send_ns u64 | server_recv_ns u64 | server_send_ns u64

`flow_id` identifies one probe run, so the reflector can count what it received from it
(directional loss). A reply is always exactly as long as its request: no amplification.
Server times are from the server's clock and only their difference (turnaround) is used.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, replace

MAGIC = b"NC"
VERSION = 1
KIND_ECHO_REQUEST = 1
KIND_ECHO_REPLY = 2
KIND_STATS_REQUEST = 3
KIND_STATS_REPLY = 4
FLAG_HMAC = 0x01

HEADER = struct.Struct("!2sBBB3xQIIQQQ")
HEADER_BYTES = HEADER.size  # 48
TAG_BYTES = 16
MAX_PACKET_BYTES = 1472  # one Ethernet MTU of UDP payload; larger datagrams are dropped

assert HEADER_BYTES == 48


class WireError(ValueError):
    """A datagram that is not a well-formed, authentic netcheck packet."""


@dataclass(frozen=True)
class Packet:
    """One decoded datagram; `size_bytes` is the length on the wire, padding and tag included."""

    kind: int
    flow_id: int
    seq: int
    size_bytes: int
    server_rx_count: int = 0
    client_send_ns: int = 0
    server_recv_ns: int = 0
    server_send_ns: int = 0
    flags: int = 0


def min_size_bytes(authenticated: bool) -> int:
    return HEADER_BYTES + (TAG_BYTES if authenticated else 0)


def encode(packet: Packet, key: bytes | None = None) -> bytes:
    """Serialise `packet`, padded to `size_bytes`, tagged with HMAC-SHA256/128 when a key is given."""
    flags = packet.flags | FLAG_HMAC if key else packet.flags & ~FLAG_HMAC
    if packet.size_bytes < min_size_bytes(key is not None) or packet.size_bytes > MAX_PACKET_BYTES:
        raise WireError(f"packet size {packet.size_bytes} outside {min_size_bytes(key is not None)}..{MAX_PACKET_BYTES}")
    header = HEADER.pack(
        MAGIC, VERSION, packet.kind, flags, packet.flow_id, packet.seq, packet.server_rx_count,
        packet.client_send_ns, packet.server_recv_ns, packet.server_send_ns,
    )
    body_len = packet.size_bytes - (TAG_BYTES if key else 0)
    body = header + bytes(body_len - HEADER_BYTES)
    if key:
        return body + _tag(key, body)
    return body


def decode(data: bytes, key: bytes | None = None) -> Packet:
    """Parse and authenticate a datagram; raise WireError for anything malformed or unauthentic."""
    if len(data) < HEADER_BYTES or len(data) > MAX_PACKET_BYTES:
        raise WireError(f"bad length {len(data)}")
    magic, version, kind, flags, flow_id, seq, rx_count, c_send, s_recv, s_send = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise WireError("bad magic")
    if version != VERSION:
        raise WireError(f"unsupported version {version}")
    if kind not in (KIND_ECHO_REQUEST, KIND_ECHO_REPLY, KIND_STATS_REQUEST, KIND_STATS_REPLY):
        raise WireError(f"unknown kind {kind}")
    if key is not None:
        if not flags & FLAG_HMAC or len(data) < HEADER_BYTES + TAG_BYTES:
            raise WireError("missing HMAC")
        body, tag = data[:-TAG_BYTES], data[-TAG_BYTES:]
        if not hmac.compare_digest(tag, _tag(key, body)):
            raise WireError("bad HMAC")
    return Packet(
        kind=kind, flow_id=flow_id, seq=seq, size_bytes=len(data), server_rx_count=rx_count,
        client_send_ns=c_send, server_recv_ns=s_recv, server_send_ns=s_send, flags=flags & ~FLAG_HMAC,
    )


def reply_to(request: Packet, server_rx_count: int, server_recv_ns: int, server_send_ns: int) -> Packet:
    """The reflector's answer: same size, same flow and seq, the server's counts and times filled in."""
    kind = KIND_ECHO_REPLY if request.kind == KIND_ECHO_REQUEST else KIND_STATS_REPLY
    return replace(
        request, kind=kind, server_rx_count=server_rx_count,
        server_recv_ns=server_recv_ns, server_send_ns=server_send_ns,
    )


def _tag(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()[:TAG_BYTES]
