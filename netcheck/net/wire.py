"""The UDP probe's wire format, shared by the probe and the reflector.

Version 1, big-endian, 48-byte header, then zero padding, then an optional 16-byte HMAC tag:

    magic "NC" | version u8 | kind u8 | flags u8 | key_expiry_min u24
    flow_id u64 | seq u32 | server_rx_count u32
    client_send_ns u64 | server_recv_ns u64 | server_send_ns u64

`flow_id` identifies one probe run, so the reflector can count what it received from it
(directional loss). A reply is always exactly as long as its request: no amplification.
Server times are from the server's clock; the client uses their difference (turnaround), and
their differences from packet to packet (one-way jitter).

Authentication (`FLAG_HMAC`): the tag is HMAC-SHA256/128 over everything before it. The key is
either the server's shared key, or (`FLAG_CLIENT_KEY`) a per-client key the server derived for
the client's address and an expiry (netcheck/server/udp_keys.py); `key_expiry_min` then carries
that expiry, in minutes since the Unix epoch modulo 2^24, so that any node holding the secret can
derive the same key again. A reply to a client key whose expiry has passed is `KIND_KEY_EXPIRED`.

A roaming key (`FLAG_KEY_ID`, with FLAG_CLIENT_KEY) is bound to a key id the server issued, not to an
address, so a dual-stack client (HTTP over IPv6, UDP over IPv4) or one behind a carrier NAT can use
it. Its datagrams carry, right after the header, the key id (8 bytes) and the address cookie
(8 bytes; zero until the reflector gave one): the reflector answers a datagram whose cookie does not
prove its source address with `KIND_ADDRESS_CHALLENGE` carrying the cookie for that address, no
larger than the smallest roaming datagram (80 bytes) — never more than it was sent — and answers in
full only once the cookie comes back from that address (return routability, as QUIC's Retry).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field, replace

MAGIC = b"NC"
VERSION = 1
KIND_ECHO_REQUEST = 1
KIND_ECHO_REPLY = 2
KIND_STATS_REQUEST = 3
KIND_STATS_REPLY = 4
KIND_KEY_EXPIRED = 5
"""The reflector's answer to a packet tagged with an expired client key: fetch a fresh key."""
KIND_ADDRESS_CHALLENGE = 6
"""The reflector's answer to a roaming key's datagram from an address not yet proven: its cookie."""
REQUEST_KINDS = (KIND_ECHO_REQUEST, KIND_STATS_REQUEST)
FLAG_HMAC = 0x01
FLAG_CLIENT_KEY = 0x02
FLAG_KEY_ID = 0x04
KEY_ID_BYTES = 8
COOKIE_BYTES = 8
NO_COOKIE = bytes(COOKIE_BYTES)
KEY_EXPIRY_MODULUS = 1 << 24

HEADER = struct.Struct("!2sBBB3sQIIQQQ")
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
    key_expiry_min: int = 0
    """With FLAG_CLIENT_KEY: the client key's expiry, minutes since the epoch modulo 2^24."""
    key_id: bytes = b""
    """With FLAG_KEY_ID: the roaming key's id (KEY_ID_BYTES)."""
    cookie: bytes = NO_COOKIE
    """With FLAG_KEY_ID: the reflector's proof that the source address receives its answers."""


@dataclass(frozen=True)
class ClientKey:
    """A per-client key the server gave this client (GET /v1/info, POST /v1/udp/key): `key` bound to the
    address the server saw, and from newer servers a roaming key bound to `key_id`, used when present."""

    key: bytes = field(repr=False)
    expiry_min: int
    """Minutes since the Unix epoch at which the server stops accepting it."""
    key_id: bytes | None = None
    roaming_key: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Signing:
    """How to sign requests: the key, the flags and expiry that name it, and a roaming key's id."""

    key: bytes | None
    flags: int = 0
    key_expiry_min: int = 0
    key_id: bytes = b""

    @property
    def min_size_bytes(self) -> int:
        return min_size_bytes(self.key is not None, bool(self.key_id))

    def request(self, kind: int, flow_id: int, seq: int, size_bytes: int, client_send_ns: int = 0,
                cookie: bytes = NO_COOKIE) -> bytes:
        """One request datagram, signed; `cookie`: the reflector's last one (roaming keys only)."""
        return encode(Packet(kind=kind, flow_id=flow_id, seq=seq, size_bytes=size_bytes, client_send_ns=client_send_ns,
                             flags=self.flags, key_expiry_min=self.key_expiry_min, key_id=self.key_id,
                             cookie=cookie), self.key)


def signing(hmac_key: bytes | None, client_key: ClientKey | None, size_bytes: int = MAX_PACKET_BYTES) -> Signing:
    """How to encode requests: the client's roaming key (when its datagram fits in `size_bytes`), else its
    address's key, else the shared key, else nothing (an open reflector)."""
    if (client_key is not None and client_key.key_id and client_key.roaming_key
            and size_bytes >= min_size_bytes(True, True)):
        return Signing(client_key.roaming_key, FLAG_CLIENT_KEY | FLAG_KEY_ID, client_key.expiry_min, client_key.key_id)
    if client_key is not None:
        return Signing(client_key.key, FLAG_CLIENT_KEY, client_key.expiry_min)
    return Signing(hmac_key)


def min_size_bytes(authenticated: bool, key_id: bool = False) -> int:
    return HEADER_BYTES + (KEY_ID_BYTES + COOKIE_BYTES if key_id else 0) + (TAG_BYTES if authenticated else 0)


def encode(packet: Packet, key: bytes | None = None) -> bytes:
    """Serialise `packet`, padded to `size_bytes`, tagged with HMAC-SHA256/128 when a key is given."""
    flags = packet.flags | FLAG_HMAC if key else packet.flags & ~FLAG_HMAC
    low = min_size_bytes(key is not None, bool(flags & FLAG_KEY_ID))
    if packet.size_bytes < low or packet.size_bytes > MAX_PACKET_BYTES:
        raise WireError(f"packet size {packet.size_bytes} outside {low}..{MAX_PACKET_BYTES}")
    if flags & FLAG_KEY_ID and (len(packet.key_id) != KEY_ID_BYTES or len(packet.cookie) != COOKIE_BYTES):
        raise WireError("a roaming key's datagram needs its key id and a cookie of 8 bytes each")
    header = HEADER.pack(
        MAGIC, VERSION, packet.kind, flags, (packet.key_expiry_min % KEY_EXPIRY_MODULUS).to_bytes(3, "big"),
        packet.flow_id, packet.seq, packet.server_rx_count, packet.client_send_ns, packet.server_recv_ns,
        packet.server_send_ns,
    )
    body_len = packet.size_bytes - (TAG_BYTES if key else 0)
    extension = packet.key_id + packet.cookie if flags & FLAG_KEY_ID else b""
    body = header + extension + bytes(body_len - HEADER_BYTES - len(extension))
    if key:
        return body + _tag(key, body)
    return body


def decode(data: bytes, key: bytes | None = None) -> Packet:
    """Parse and authenticate a datagram; raise WireError for anything malformed or unauthentic."""
    if len(data) < HEADER_BYTES or len(data) > MAX_PACKET_BYTES:
        raise WireError(f"bad length {len(data)}")
    magic, version, kind, flags, expiry, flow_id, seq, rx_count, c_send, s_recv, s_send = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise WireError("bad magic")
    if version != VERSION:
        raise WireError(f"unsupported version {version}")
    if kind not in (KIND_ECHO_REQUEST, KIND_ECHO_REPLY, KIND_STATS_REQUEST, KIND_STATS_REPLY, KIND_KEY_EXPIRED,
                    KIND_ADDRESS_CHALLENGE):
        raise WireError(f"unknown kind {kind}")
    key_id, cookie = b"", NO_COOKIE
    if flags & FLAG_KEY_ID:
        if len(data) < min_size_bytes(True, True):
            raise WireError("short roaming datagram")
        key_id = data[HEADER_BYTES:HEADER_BYTES + KEY_ID_BYTES]
        cookie = data[HEADER_BYTES + KEY_ID_BYTES:HEADER_BYTES + KEY_ID_BYTES + COOKIE_BYTES]
    if key is not None:
        if not flags & FLAG_HMAC or len(data) < HEADER_BYTES + TAG_BYTES:
            raise WireError("missing HMAC")
        body, tag = data[:-TAG_BYTES], data[-TAG_BYTES:]
        if not hmac.compare_digest(tag, _tag(key, body)):
            raise WireError("bad HMAC")
    return Packet(
        kind=kind, flow_id=flow_id, seq=seq, size_bytes=len(data), server_rx_count=rx_count,
        client_send_ns=c_send, server_recv_ns=s_recv, server_send_ns=s_send, flags=flags & ~FLAG_HMAC,
        key_expiry_min=int.from_bytes(expiry, "big"), key_id=key_id, cookie=cookie,
    )


def peek(data: bytes) -> Packet:
    """The header of a datagram, not authenticated: which key to check it with. WireError if malformed."""
    return decode(data, None)


def reply_to(request: Packet, server_rx_count: int, server_recv_ns: int, server_send_ns: int) -> Packet:
    """The reflector's answer: same size, same flow and seq, the server's counts and times filled in."""
    kind = KIND_ECHO_REPLY if request.kind == KIND_ECHO_REQUEST else KIND_STATS_REPLY
    return replace(
        request, kind=kind, server_rx_count=server_rx_count,
        server_recv_ns=server_recv_ns, server_send_ns=server_send_ns,
    )


def key_expired_reply_to(request: Packet) -> Packet:
    """The reflector's answer to a request whose client key has expired: same size, same flow and seq."""
    return replace(request, kind=KIND_KEY_EXPIRED)


def challenge_to(request: Packet, cookie: bytes, kind: int = KIND_ADDRESS_CHALLENGE) -> Packet:
    """The answer to a roaming datagram from an unproven address: the smallest roaming datagram (never
    larger than the request, which is at least that), carrying the cookie that proves the address."""
    return replace(request, kind=kind, cookie=cookie, size_bytes=min_size_bytes(True, True))


def _tag(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()[:TAG_BYTES]
