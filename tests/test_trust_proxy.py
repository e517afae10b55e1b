"""Behind a load balancer (issue 16): `serve --trust-proxy ADDRESS` binds UDP keys to the client's
address from X-Forwarded-For, for the proxy's requests only; and a key is the same on every node
that holds the secret (so the reflector of any node answers it)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp

from netcheck.server.app import start_server
from netcheck.server.udp_keys import derive_key

SECRET = b"trust-proxy-test-secret-0123456789"


def key_of(answer: dict[str, Any]) -> bytes:
    text = answer["udp_key"]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def udp_key(url: str, forwarded_for: str | None = None) -> dict[str, Any]:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/udp/key", headers=headers) as response:
            assert response.status == 200
            return await response.json()


def test_the_proxy_s_forwarded_client_address_binds_the_key_and_no_one_else_s() -> None:
    async def body() -> None:
        trusting = await start_server(secret=SECRET, trust_proxy="127.0.0.0/8")
        untrusting = await start_server(secret=SECRET, trust_proxy="192.0.2.1")
        try:
            # the last entry is the one the proxy appended; the first is whatever the client claimed
            answer = await udp_key(trusting.url, "203.0.113.9, 198.51.100.7")
            assert key_of(answer) == derive_key(SECRET, "198.51.100.7", answer["udp_key_expiry_min"])
            answer = await udp_key(untrusting.url, "198.51.100.7")  # not from its proxy: header ignored
            assert key_of(answer) == derive_key(SECRET, "127.0.0.1", answer["udp_key_expiry_min"])
            answer = await udp_key(trusting.url, "not-an-address")
            assert key_of(answer) == derive_key(SECRET, "127.0.0.1", answer["udp_key_expiry_min"])
        finally:
            await trusting.close()
            await untrusting.close()

    asyncio.run(body())


def test_two_nodes_with_one_secret_issue_the_same_key() -> None:
    async def body() -> None:
        nodes = [await start_server(secret=SECRET) for _ in range(2)]
        try:
            answers = [await udp_key(node.url) for node in nodes]
            if answers[0]["udp_key_expiry_min"] == answers[1]["udp_key_expiry_min"]:  # not across a minute
                assert key_of(answers[0]) == key_of(answers[1])
            for answer in answers:
                assert key_of(answer) == derive_key(SECRET, "127.0.0.1", answer["udp_key_expiry_min"])
        finally:
            for node in nodes:
                await node.close()

    asyncio.run(body())
