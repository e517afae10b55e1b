"""HTTP helpers shared by client and server: bounded body reads, stream pacing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

MAX_STREAM_MBPS = 50.0
"""Each throughput stream is paced to this, so 4 streams measure up to 200 Mbit/s: far more than a
video session needs, and a bound on what one client takes from the server (and from its own CPU)."""


class BodyTooLarge(ValueError):
    """The server sent more than the caller allows."""


async def read_bounded(response: Any, max_bytes: int) -> bytes:
    """The whole body of an aiohttp response, or BodyTooLarge past `max_bytes`.

    `response.content.read(n)` returns what has arrived so far, which on a slow link is only part
    of the body; this reads to the end.
    """
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > max_bytes:
            raise BodyTooLarge(f"answer larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class Pacer:
    """Keeps a stream at or below `rate_mbps` by sleeping when it runs ahead."""

    def __init__(self, rate_mbps: float) -> None:
        self.bytes_per_s = rate_mbps * 1e6 / 8
        self.start_s = time.monotonic()
        self.sent_bytes = 0

    async def sent(self, count: int) -> None:
        self.sent_bytes += count
        ahead_s = self.sent_bytes / self.bytes_per_s - (time.monotonic() - self.start_s)
        if ahead_s > 0:
            await asyncio.sleep(ahead_s)


BUSY_WAIT_BUDGET_S = 60.0
"""How long a client waits in all for a busy server before it reports `timeout`."""
MAX_RETRY_AFTER_S = 60


class ServerBusy(Exception):
    """The server answered 429: try again after `retry_after_s` (from its Retry-After header)."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"server busy, retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


def retry_after_s(headers: Any) -> int:
    """Retry-After in whole seconds, 1..60 (a hostile or broken value cannot park the client)."""
    try:
        value = int(str(headers.get("Retry-After", "5")).strip())
    except ValueError:
        value = 5
    return min(MAX_RETRY_AFTER_S, max(1, value))


def busy_message(retry_in_s: int) -> str:
    """The one sentence the CLI and the page show while waiting."""
    return f"the clinic's test server is busy, retrying in {retry_in_s} s"


def bearer(token: str | None) -> dict[str, str]:
    """The Authorization header of a token (never in a URL: URLs end up in access logs)."""
    return {"Authorization": f"Bearer {token}"} if token else {}
