"""Per-client keys for the UDP reflector: it answers only datagrams that prove their source.

A client gets a key over HTTP(S) — a TCP exchange, so the address the key is bound to is proven —
and tags every datagram with it (wire.FLAG_CLIENT_KEY). The key is derived, not stored:
HMAC-SHA256(secret, address | expiry minute), so any node holding the same secret verifies it and
a restart forgets nothing. A datagram from another address, or one replayed from there, fails the
tag and gets no answer: the reflector cannot be aimed at a victim (irtt's handshake and QUIC's
address validation solve the same problem). Only a datagram from the address a key was given to,
with its tag intact, is answered — at most as large as it came.

A dual-stack client (HTTP over IPv6, UDP over IPv4) or one behind a carrier NAT sends its UDP from
another address than its HTTP: the same request also gets a roaming key, bound to a random key id
(HMAC(secret, key id | expiry minute)), which works from any address once that address is proven by
a cookie (HMAC(secret, key id | expiry | address)): the reflector answers an unproven address only
with that cookie, in 80 bytes, never more than it was sent (docs/design-notes.md, "A UDP key for
dual-stack clients").
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import socket
from collections import OrderedDict
from dataclasses import dataclass

from netcheck.net import wire

KEY_TTL_S = 600.0
"""A check needs seconds; an agent refreshes its key before it runs out (server_info.ReflectorAccess)."""
EXPIRED_GRACE_S = 60.0
"""A key is still accepted this long after its expiry: the client's refresh may be a window late."""
KEY_CACHE_ENTRIES = 4096


@dataclass(frozen=True)
class IssuedKey:
    key: bytes
    expiry_min: int
    """Minutes since the Unix epoch at which the key expires (full value; the wire carries it mod 2^24)."""
    ttl_s: float
    key_id: bytes = b""
    roaming_key: bytes = b""
    """Bound to `key_id`, not to an address: works from any address the client proves (wire.FLAG_KEY_ID)."""


def normalized_address(address: str) -> str:
    """The address a key is bound to, written one way: IPv4-mapped IPv6 as IPv4, IPv6 compressed."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


IPV6_SHARE_PREFIX = 64
"""An IPv6 client's fair share is its /64: a household or an office gets a whole /64 (RFC 6177) and
may use any of its 2^64 addresses, so a share per full address would be no share at all."""


def share_address(address: str) -> str:
    """Whose share a source address takes: an IPv4 address (a mapped one too) itself, an IPv6 one its
    /64 (`2001:db8:1:2::/64`). A key stays bound to the full address (normalized_address): the
    share is about fairness, the key about proving where a datagram comes from.

    The reflector calls it for every datagram, so it parses with inet_pton (≈ 1 µs), not ipaddress
    (≈ 40 µs: a flood of distinct addresses would cost a core)."""
    if ":" not in address:  # IPv4, as a socket writes it (or not an address at all): itself
        return address
    try:
        packed = socket.inet_pton(socket.AF_INET6, address.split("%", 1)[0])
    except (OSError, ValueError):
        return address
    if packed[:12] == _IPV4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return f"{socket.inet_ntop(socket.AF_INET6, packed[:8] + bytes(8))}/{IPV6_SHARE_PREFIX}"


_IPV4_MAPPED = bytes(10) + b"\xff\xff"


def derive_key(secret: bytes, address: str, expiry_min: int) -> bytes:
    message = f"netcheck-udp-key|v1|{normalized_address(address)}|{expiry_min}".encode()
    return hmac.new(secret, message, hashlib.sha256).digest()


def derive_roaming_key(secret: bytes, key_id: bytes, expiry_min: int) -> bytes:
    return hmac.digest(secret, b"netcheck-udp-key|v2|" + key_id + b"|%d" % expiry_min, "sha256")


def address_cookie(secret: bytes, key_id: bytes, expiry_min: int, source: str) -> bytes:
    """The proof that `source` receives what is sent to it for this roaming key: only a host that gets
    the reflector's answers at that address learns it. Bound to the address, not the port (a NAT may
    give each flow its own); IPv4-mapped written as IPv4 without parsing (this runs for every datagram)."""
    if source.startswith("::ffff:") and "." in source:
        source = source[7:]
    message = b"netcheck-udp-cookie|v1|" + key_id + b"|%d|" % expiry_min + source.encode()
    return hmac.digest(secret, message, "sha256")[:wire.COOKIE_BYTES]


def full_expiry_min(wrapped: int, now_s: float) -> int:
    """The expiry minute nearest to now whose value modulo 2^24 is `wrapped` (the wire's 24 bits)."""
    now_min = int(now_s // 60)
    base = now_min - now_min % wire.KEY_EXPIRY_MODULUS + wrapped
    candidates = (base - wire.KEY_EXPIRY_MODULUS, base, base + wire.KEY_EXPIRY_MODULUS)
    return min(candidates, key=lambda candidate: abs(candidate - now_min))


class ClientKeys:
    """Issues keys for addresses and finds the key a datagram claims, bounded in what it caches."""

    def __init__(self, secret: bytes, ttl_s: float = KEY_TTL_S) -> None:
        if len(secret) < 16:
            raise ValueError("the reflector's key secret must be at least 16 bytes")
        self.secret = secret
        self.ttl_s = ttl_s
        self._cache: OrderedDict[tuple[str | bytes, int], bytes] = OrderedDict()

    def issue(self, address: str, now_s: float) -> IssuedKey:
        """The address's key and a roaming key with a fresh random id, for one caller who may measure."""
        expiry_min = math.ceil((now_s + self.ttl_s) / 60.0)
        key_id = os.urandom(wire.KEY_ID_BYTES)
        return IssuedKey(self.key_for(address, expiry_min), expiry_min, expiry_min * 60.0 - now_s,
                         key_id, derive_roaming_key(self.secret, key_id, expiry_min))

    def key_for(self, address: str, expiry_min: int) -> bytes:
        return self._cached((address, expiry_min))

    def key_for_id(self, key_id: bytes, expiry_min: int) -> bytes:
        return self._cached((key_id, expiry_min))

    def cookie(self, key_id: bytes, expiry_min: int, source: str) -> bytes:
        return address_cookie(self.secret, key_id, expiry_min, source)

    def _cached(self, cache_key: tuple[str | bytes, int]) -> bytes:
        key = self._cache.get(cache_key)
        if key is None:
            bound_to, expiry_min = cache_key
            if isinstance(bound_to, bytes):
                key = derive_roaming_key(self.secret, bound_to, expiry_min)
            else:
                key = derive_key(self.secret, bound_to, expiry_min)
            self._cache[cache_key] = key
            if len(self._cache) > KEY_CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return key

    @staticmethod
    def expired(expiry_min: int, now_s: float) -> bool:
        return now_s > expiry_min * 60.0 + EXPIRED_GRACE_S
