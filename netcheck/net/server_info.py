"""Finding a netcheck server's UDP reflector: GET /v1/info names its port and hands out this
client's key for it (a reflector answers only datagrams that prove their source address).

Every caller that needs the reflector (check, agent, reach, the throughput probe's loaded RTT)
asks here, so the lookup and its error texts exist once. The key comes in the same round trip
as the port: getting it adds nothing to a check.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from netcheck.errors import ConfigError, MeasurementError
from netcheck.net.httpio import BodyTooLarge, bearer, read_bounded
from netcheck.net import wire
from netcheck.net.wire import ClientKey

INFO_TIMEOUT_S = 3.0
"""Short enough that an unreachable server ends the check within 5 s."""
MAX_INFO_BYTES = 64 * 1024
HMAC_KEY_MISSING = "hmac_key: the server requires an HMAC key; set NETCHECK_HMAC_KEY or hmac_key_file"
TOKEN_MISSING = "this clinic's server measures only with a check link's token: set NETCHECK_TOKEN"
TOKEN_REFUSED = "the clinic's server refused the token in NETCHECK_TOKEN (wrong, expired, or for another server)"
KEY_REFRESH_MARGIN_S = 30.0
"""A key is renewed this long before it runs out (a window may start just before its expiry)."""


@dataclass(frozen=True)
class ServerInfo:
    version: str
    udp_port: int
    hmac_required: bool
    av: bool
    """The server hosts a media peer for the A/V probe."""
    throughput: bool
    token_required: bool = False
    udp_key: ClientKey | None = None
    """This client's key for the reflector, bound to the address the server saw; None from an older
    server, or when a token was required and not given."""
    udp_key_valid_until_s: float = 0.0
    """time.monotonic() by which to have fetched a fresh key."""
    short_of_cpu_ago_s: float | None = None
    """Seconds since the node was last short of CPU (its own CPU, not the machine's); infinity when not
    within the node's memory of two minutes; None from an older server."""


@dataclass(frozen=True)
class ReflectorAddress:
    """Where to send the UDP stream, and the key to sign it with."""

    host: str
    port: int
    client_key: ClientKey | None = None
    key_valid_until_s: float = float("inf")

    def key_expires_within(self, seconds: float) -> bool:
        return self.client_key is not None and time.monotonic() + seconds >= self.key_valid_until_s


async def fetch_server_info(server_url: str, token: str | None = None) -> ServerInfo:
    """GET /v1/info: the reflector's UDP port and this client's key, so a client needs only the URL."""
    import aiohttp

    url = f"{server_url}/v1/info"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=INFO_TIMEOUT_S)) as session:
            async with session.get(url, allow_redirects=False, headers=bearer(token)) as response:
                if response.status != 200:
                    raise MeasurementError(f"server {server_url} answered HTTP {response.status} to /v1/info")
                body = await read_bounded(response, MAX_INFO_BYTES)
    except BodyTooLarge:
        raise MeasurementError(f"{url} is not a netcheck server (answer too large)") from None
    except asyncio.TimeoutError:
        raise MeasurementError(f"server {server_url} did not answer within {INFO_TIMEOUT_S:g} s") from None
    except aiohttp.ClientConnectorCertificateError as error:  # verification is on: never skipped
        reason = getattr(error.certificate_error, "verify_message", None) or error.certificate_error
        raise MeasurementError(f"server {server_url}: its TLS certificate is not trusted ({reason}); "
                               "if the clinic uses its own CA, point SSL_CERT_FILE at its certificate") from None
    except aiohttp.ClientConnectorError as error:
        reason = (error.os_error.strerror or str(error.os_error)).lower()
        raise MeasurementError(f"server {server_url} unreachable: {reason}") from None
    except aiohttp.ClientError as error:
        raise MeasurementError(f"server {server_url} unreachable: {type(error).__name__}: {error}") from None
    try:
        info = json.loads(body)
        udp_port = info["udp_port"]
        if not isinstance(udp_port, int) or not 1 <= udp_port <= 65535:
            raise ValueError
        key, ttl_s = _udp_key(info)
        return ServerInfo(version=str(info.get("version", "?")), udp_port=udp_port,
                          hmac_required=bool(info.get("hmac_required", False)), av=info.get("av") is True,
                          throughput=info.get("throughput") is True, token_required=info.get("token_required") is True,
                          udp_key=key, udp_key_valid_until_s=time.monotonic() + ttl_s - KEY_REFRESH_MARGIN_S,
                          short_of_cpu_ago_s=_short_of_cpu_ago_s(info))
    except (ValueError, KeyError, TypeError):
        raise MeasurementError(f"{url} is not a netcheck server (unexpected answer)") from None


def _short_of_cpu_ago_s(info: dict) -> float | None:
    """/v1/info's `short_of_cpu_ago_s`: null is "not lately" (infinity); absent or not a number, None."""
    if "short_of_cpu_ago_s" not in info:
        return None
    value = info["short_of_cpu_ago_s"]
    if value is None:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        return None
    return float(value)


def _udp_key(info: dict) -> tuple[ClientKey | None, float]:
    """The key and its time to live from /v1/info's fields; ValueError when present but malformed."""
    encoded = info.get("udp_key")
    if encoded is None:
        return None, 0.0
    expiry_min, ttl_s = info.get("udp_key_expiry_min"), info.get("udp_key_ttl_s")
    if (not isinstance(encoded, str) or len(encoded) > 128 or isinstance(expiry_min, bool)
            or not isinstance(expiry_min, int) or not isinstance(ttl_s, (int, float)) or not 0 < ttl_s <= 86400):
        raise ValueError("bad udp key")
    key = _unb64(encoded)
    if len(key) < 16:
        raise ValueError("short udp key")
    key_id, roaming_key = info.get("udp_key_id"), info.get("udp_roaming_key")
    if key_id is None or roaming_key is None:  # an older server: the address's key only
        return ClientKey(key, expiry_min), float(ttl_s)
    if (not isinstance(key_id, str) or not isinstance(roaming_key, str) or len(key_id) > 16
            or len(roaming_key) > 128):
        raise ValueError("bad roaming udp key")
    key_id_bytes, roaming_key_bytes = _unb64(key_id), _unb64(roaming_key)
    if len(key_id_bytes) != wire.KEY_ID_BYTES or len(roaming_key_bytes) < 16:
        raise ValueError("bad roaming udp key")
    return ClientKey(key, expiry_min, key_id_bytes, roaming_key_bytes), float(ttl_s)


def _unb64(encoded: str) -> bytes:
    """base64url without padding; ValueError (binascii.Error is one) when it is not."""
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))


def reflector_of(server_url: str, info: ServerInfo, hmac_key: bytes | None,
                 token: str | None = None) -> ReflectorAddress:
    """Where the reflector is (the server URL's host, the port /v1/info named) and the key to use.

    Raises ConfigError when this client cannot sign what the reflector would answer (no token for
    a server that requires one, no shared key for an older server that requires it): every packet
    would be ignored, so measuring would only report a false "blocked".
    """
    host = urlsplit(server_url).hostname or ""
    if info.udp_key is not None:
        return ReflectorAddress(host, info.udp_port, info.udp_key, info.udp_key_valid_until_s)
    if info.token_required:
        raise ConfigError(TOKEN_REFUSED if token else TOKEN_MISSING)
    if info.hmac_required and hmac_key is None:
        raise ConfigError(HMAC_KEY_MISSING)
    return ReflectorAddress(host, info.udp_port)


async def find_reflector(server_url: str, hmac_key: bytes | None, token: str | None = None) -> ReflectorAddress:
    """Ask the server where its reflector is, and for this client's key (one HTTP round trip)."""
    return reflector_of(server_url, await fetch_server_info(server_url, token), hmac_key, token)
