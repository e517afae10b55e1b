"""Bounded body reads against a real aiohttp server that answers slowly, in pieces."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from netcheck.net.httpio import BodyTooLarge, read_bounded
from tests.harness.servers import local_app


async def slow_body(max_bytes: int) -> bytes:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for piece in (b'{"a": ', b'"' + b"x" * 3000 + b'"', b"}"):
            await response.write(piece)
            await asyncio.sleep(0.05)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/", handler)
    async with local_app(app) as url, aiohttp.ClientSession() as session, session.get(f"{url}/") as response:
        return await read_bounded(response, max_bytes)


def test_a_body_sent_in_pieces_is_read_whole() -> None:
    body = asyncio.run(slow_body(64 * 1024))
    assert body.startswith(b'{"a": "x') and body.endswith(b'"}') and len(body) == 3009


def test_a_body_over_the_bound_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        asyncio.run(slow_body(1000))
