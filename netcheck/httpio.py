"""Reading HTTP bodies from a server that may be slow or hostile: whole, but bounded."""

from __future__ import annotations

from typing import Any


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
