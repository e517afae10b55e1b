"""Parsing of user-given values (durations, HOST:PORT, URLs; errors are one-line UsageErrors), and of
JSON a peer sends (`strict_json`)."""

from __future__ import annotations

import json
import math
import re
from typing import Any
from urllib.parse import urlsplit

from netcheck.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration_s(text: str, what: str = "duration") -> float:
    """'20ms', '3s', '1.5', '2m', '1h', '7d' → seconds. A bare number means seconds."""
    match = _DURATION.match(text)
    if not match:
        raise UsageError(f"bad {what} {text!r}: use a number with ms, s, m, h or d, e.g. 20ms, 3s or 1h")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_host_port(text: str, what: str = "target") -> tuple[str, int]:
    """'host:port', '1.2.3.4:5', '[::1]:5' → (host, port)."""
    match = re.match(r"^\[([0-9a-fA-F:.]+)\]:(\d+)$", text) or re.match(r"^([^:\[\]\s]+):(\d+)$", text)
    if not match:
        raise UsageError(f"bad {what} {text!r}: use HOST:PORT, e.g. 192.0.2.10:4000 or [::1]:4000")
    port = int(match.group(2))
    if not 1 <= port <= 65535:
        raise UsageError(f"bad {what} {text!r}: port must be 1..65535")
    return match.group(1), port


def parse_server_url(text: str) -> str:
    """Validate an http(s) server URL and return it without a trailing slash."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as error:
        raise UsageError(f"bad server URL {text!r}: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"bad server URL {text!r}: use http://HOST:PORT or https://HOST")
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"bad server URL {text!r}: port must be 1..65535")
    return text.strip().rstrip("/")


def parse_hub_url(text: str) -> str:
    """`redis://HOST[:PORT][/N]` or `rediss://…` (TLS), without a password: URLs end up in logs."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as error:
        raise UsageError(f"bad hub URL: {error}") from None
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise UsageError("bad hub URL: use redis://HOST:PORT/N (or rediss:// for TLS)")
    if parts.password is not None:
        raise UsageError("no password in the hub URL (it would be logged): use NETCHECK_HUB_PASSWORD "
                         "or hub_password_file (mode 0600)")
    if port is not None and not 1 <= port <= 65535:
        raise UsageError("bad hub URL: port must be 1..65535")
    if parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise UsageError("bad hub URL: the path is the database number, e.g. /0")
    if parts.query or parts.fragment:
        raise UsageError("bad hub URL: no query or fragment")
    return text.strip()


def strict_json(raw: bytes | str) -> Any:
    """JSON as RFC 8259 has it, for what a peer sends: Python's json also takes NaN, Infinity and
    -Infinity, and turns 1e999 into infinity, none of which a figure may be (and which --json output
    and the store could not write back). Raises ValueError with a short reason: not UTF-8, not JSON,
    nested too deep, or a number that is not finite."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw  # not UTF-16 or -32, which json.loads guesses
        return json.loads(text, parse_constant=_not_a_number, parse_float=_finite)
    except RecursionError:  # "[[[[…" thousands deep
        raise ValueError("nested too deep") from None


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON has")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number out of range ({text[:20]})")
    return number


_FRAME_ANCESTOR = re.compile(r"^https?://(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:\d{1,5})?$")
"""A CSP host-source that names one site: scheme, host (a leading `*.` for its subdomains), port."""
MAX_FRAME_ANCESTORS = 8


def parse_frame_ancestors(value: object) -> tuple[str, ...]:
    """The origins besides the node's own that may frame its pages (`[serve] frame_ancestors`, e.g. the
    clinic's call page): a list of `https://HOST[:PORT]`. No path, quote, space or semicolon (each would
    change the header's meaning), no bare `*`: any site could then frame the panel (clickjacking)."""
    if not isinstance(value, list) or not all(isinstance(origin, str) for origin in value):
        raise UsageError('must be a list of origins, e.g. ["https://call.clinic.example"]')
    if len(value) > MAX_FRAME_ANCESTORS:
        raise UsageError(f"at most {MAX_FRAME_ANCESTORS} origins")
    for origin in value:
        if not _FRAME_ANCESTOR.match(origin):
            raise UsageError(f"{origin[:100]!r} is not an origin: use https://HOST or https://HOST:PORT "
                             "(http:// on a LAN; *.HOST for its subdomains)")
    return tuple(origin.lower() for origin in value)


_CALL_ORIGIN = re.compile(r"^(https://[a-z0-9-]+(\.[a-z0-9-]+)*|http://(localhost|127\.0\.0\.1))(:\d{1,5})?$")
"""An exact origin: https, or http on the loopback (a test page); no wildcard, path or trailing slash."""
MAX_CALL_ORIGINS = 8


def parse_call_origins(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The clinic's video pages that may load web/callstats.js and post their call's statistics
    (`serve --call-origin`, repeatable): the only origins the node sends CORS headers to. A wildcard
    would let any site post a token it stole into the therapist's panel."""
    if len(values) > MAX_CALL_ORIGINS:
        raise UsageError(f"--call-origin: at most {MAX_CALL_ORIGINS} origins")
    for origin in values:
        if not _CALL_ORIGIN.match(origin.lower()):
            raise UsageError(f"--call-origin {origin[:100]!r} is not an origin: use https://HOST or https://HOST:PORT "
                             "(http://localhost for a test page), without a path")
    return tuple(dict.fromkeys(origin.lower() for origin in values))
