"""TURN for browsers: short-lived credentials from a secret the TURN server shares with us.

A browser behind a firewall that blocks UDP reaches the clinic only through a TURN relay over TCP
or TLS, so the page needs TURN credentials; a static password handed to every page would be
everybody's for good. coturn's `use-auth-secret` + `static-auth-secret` (the "TURN REST API",
draft-uberti-behave-turn-rest-00) accepts instead a username `<unix expiry>:<label>` whose password
is base64(HMAC-SHA1(secret, username)): we sign, coturn recomputes and refuses it after the expiry.
Pure: no I/O, the clock is a parameter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from netcheck.errors import UsageError

CREDENTIAL_TTL_S = 600
"""How long a page's TURN credentials are accepted. The TURN server checks them again at every
refresh and permission of the allocation, so they must outlive the call; the page asks for them just
before it (≈ 30 s), and 10 minutes leaves room for a slow start and for the clocks of this server and
the TURN server disagreeing by minutes, while a credential copied out of a page is soon useless."""

TRANSPORTS = ("udp", "tcp")
SCHEMES = ("turn", "turns")
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_DNS_LABEL}(?:\.{_DNS_LABEL})*\.?")
_PORT = re.compile(r"[0-9]{1,5}")
_LABEL = re.compile(r"[A-Za-z0-9._-]{1,128}")


@dataclass(frozen=True)
class TurnCredentials:
    """One username and password for a TURN server with `use-auth-secret`."""

    username: str
    """`<unix expiry>:<label>`: coturn reads the expiry from it."""
    credential: str = field(repr=False)
    """base64(HMAC-SHA1(secret, username)): the long-term credential's password (RFC 8489 § 9.2)."""
    expires_at_s: int
    """Unix seconds after which the TURN server refuses them."""


def turn_credentials(secret: str, label: str, now_s: float, ttl_s: float = CREDENTIAL_TTL_S) -> TurnCredentials:
    """Credentials valid `ttl_s` seconds from `now_s` (unix seconds). `label` names who they are for in
    the TURN server's log (A-Z a-z 0-9 . _ -: no colon, which separates it from the expiry)."""
    if not secret:
        raise ValueError("the TURN secret must not be empty")
    if not _LABEL.fullmatch(label):
        raise ValueError(f"TURN username label {label!r}: use 1-128 of A-Z a-z 0-9 . _ -")
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be positive, got {ttl_s!r}")
    expires_at_s = int(now_s + ttl_s)
    username = f"{expires_at_s}:{label}"
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return TurnCredentials(username, base64.b64encode(digest).decode("ascii"), expires_at_s)


def parse_browser_turn_url(url: str) -> str:
    """A TURN URL as a browser takes it (RFC 7065): `turn:HOST[:PORT][?transport=udp|tcp]`, or `turns:`
    (TLS, so TCP). Returns it unchanged; raises UsageError naming what is wrong, in one line."""
    usage = "use turn:HOST:PORT?transport=tcp or turns:HOST:PORT?transport=tcp"
    scheme, colon, rest = url.partition(":")
    if not colon or scheme not in SCHEMES:
        raise UsageError(f"--browser-turn {url!r}: the scheme must be turn or turns; {usage}")
    address, question, query = rest.partition("?")
    if question:
        name, equals, transport = query.partition("=")
        if name != "transport" or not equals or transport not in TRANSPORTS:
            raise UsageError(f"--browser-turn {url!r}: the only query is ?transport=udp or ?transport=tcp")
        if scheme == "turns" and transport == "udp":
            raise UsageError(f"--browser-turn {url!r}: turns: is TURN over TLS, which runs over TCP; "
                             "use ?transport=tcp")
    host, port = _host_and_port(address)
    if not host:
        raise UsageError(f"--browser-turn {url!r}: no host; {usage}")
    if not _valid_host(host):
        raise UsageError(f"--browser-turn {url!r}: {host!r} is not a host name or IP address; {usage}")
    if port is not None and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
        raise UsageError(f"--browser-turn {url!r}: port {port!r} is not a number in 1..65535")
    return url


@dataclass(frozen=True)
class BrowserTurn:
    """The TURN server(s) handed to browser pages, and the secret their credentials are signed with."""

    urls: tuple[str, ...]
    """Validated by parse_browser_turn_url; one RTCIceServer carries them all (one credential)."""
    secret: str = field(repr=False)
    """coturn's `static-auth-secret`."""
    ttl_s: float = CREDENTIAL_TTL_S

    def ice_server(self, label: str, now_s: float) -> dict[str, Any]:
        """One RTCIceServer (WebRTC's dictionary, as `new RTCPeerConnection({iceServers})` takes it)."""
        credentials = turn_credentials(self.secret, label, now_s, self.ttl_s)
        return {"urls": list(self.urls), "username": credentials.username, "credential": credentials.credential}


def browser_turn(urls: Sequence[str], secret: str | None) -> BrowserTurn | None:
    """`serve --browser-turn` and its secret, checked together; None when no URL is given."""
    if not urls:
        return None
    checked = tuple(parse_browser_turn_url(url) for url in urls)
    if not secret:
        raise UsageError("--browser-turn needs the TURN server's static-auth-secret: set NETCHECK_TURN_SECRET "
                         "or turn_secret_file (mode 0600) in the config, never on the command line")
    return BrowserTurn(checked, secret)


def _host_and_port(address: str) -> tuple[str, str | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port`; a bracketed host that is not IPv6 stays bracketed
    (so that it is refused, and named as written)."""
    if address.startswith("["):
        host, bracket, tail = address[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")) or not _is_ipv6(host):
            return address, None
        return host, tail[1:] if tail else None
    host, colon, port = address.partition(":")
    return host, port if colon else None


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST_NAME.fullmatch(host))
