"""Finding a netcheck server's UDP reflector: GET /v1/info names its port and whether it needs a key.

Every caller that needs the reflector (check, agent, reach, the throughput probe's loaded RTT)
asks here, so the lookup and its error texts exist once.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from netcheck.errors import ConfigError, MeasurementError
from netcheck.httpio import BodyTooLarge, read_bounded

INFO_TIMEOUT_S = 3.0
"""Short enough that an unreachable server ends the check within 5 s."""
MAX_INFO_BYTES = 64 * 1024
HMAC_KEY_MISSING = "hmac_key: the server requires an HMAC key; set NETCHECK_HMAC_KEY or hmac_key_file"


@dataclass(frozen=True)
class ServerInfo:
    version: str
    udp_port: int
    hmac_required: bool
    av: bool
    """The server hosts a media peer for the A/V probe."""
    throughput: bool


async def fetch_server_info(server_url: str) -> ServerInfo:
    """GET /v1/info: the reflector's UDP port, so a client needs only the server's URL."""
    import aiohttp

    url = f"{server_url}/v1/info"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=INFO_TIMEOUT_S)) as session:
            async with session.get(url, allow_redirects=False) as response:
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
        return ServerInfo(str(info.get("version", "?")), udp_port, bool(info.get("hmac_required", False)),
                          info.get("av") is True, info.get("throughput") is True)
    except (ValueError, KeyError, TypeError):
        raise MeasurementError(f"{url} is not a netcheck server (unexpected answer)") from None


def reflector_of(server_url: str, info: ServerInfo, hmac_key: bytes | None) -> tuple[str, int]:
    """(host, port) of the reflector: the server URL's host, the port /v1/info named.

    Raises ConfigError when the server requires a key this client does not have: every packet
    would be ignored, so measuring would only report a false "blocked".
    """
    if info.hmac_required and hmac_key is None:
        raise ConfigError(HMAC_KEY_MISSING)
    return urlsplit(server_url).hostname or "", info.udp_port


async def find_reflector(server_url: str, hmac_key: bytes | None) -> tuple[str, int]:
    """Ask the server where its reflector is (one HTTP round trip)."""
    return reflector_of(server_url, await fetch_server_info(server_url), hmac_key)
