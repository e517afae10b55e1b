"""The Redis hub's watcher leases (redis_leases.py) against a real `redis-server`: a held watcher
keeps a lease that expires, a killed node's leases leave within the lease time, and a subscribe that
fails after taking its lease gives it back.

Time compressed honestly: every part of the lease schedule is a multiple of `keepalive_s` (renewed
every keep-alive, lasting `lease_keepalives` of them, the set expiring with its newest lease; no
fixed second anywhere), so 12 keep-alives of 0.5 s pass through the same states as the 3 minutes
(12 × 15 s) of the deployed schedule, with Redis round trips a larger share of each step. The
killed-node test runs the deployed schedule itself: a real `netcheck serve`, held past the 46 s at
which the lease used to lose its expiry, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Iterator

import aiohttp
import pytest
import redis.asyncio as redis

from netcheck.server.hub.backend import HubLimits
from netcheck.server.refusal import Refusal
from netcheck.server.hub.redis_backend import RedisBackend
from netcheck.server.hub.redis_ids import key
from netcheck.tokens import create_token
from tests.harness.redis_server import RedisServer
from tests.harness.servers import start_serve, stop, subprocess_env

SECRET = secrets.token_urlsafe(24)
DEPLOYED = HubLimits()
COMPRESSED = HubLimits(keepalive_s=0.5)
HELD_KEEPALIVES = 12
"""3 minutes of the deployed schedule (15 s keep-alives)."""


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


async def lease_state(client: redis.Redis, session_id: str) -> tuple[int, list[float], int]:
    """The session's lease set: how many leases, their expiries (unix s), and its own expiry (PTTL ms)."""
    leases = key(session_id, "watchers")
    held = await client.zrange(leases, 0, -1, withscores=True)
    return len(held), [score for _, score in held], await client.pttl(leases)


def test_a_watcher_held_for_3_minutes_of_keepalives_keeps_its_lease_with_an_expiry(
        redis_server: RedisServer) -> None:
    async def scenario() -> None:
        backend = RedisBackend(redis_server.url, None, COMPRESSED)
        observer = redis.Redis.from_url(redis_server.url)
        session_id = f"held-{uuid.uuid4().hex[:8]}"
        lease_ms = COMPRESSED.lease_keepalives * COMPRESSED.keepalive_s * 1000
        try:
            watcher = await backend.subscribe(session_id, None, None)
            ends_s = time.monotonic() + HELD_KEEPALIVES * COMPRESSED.keepalive_s + 0.5
            checks = 0
            while time.monotonic() < ends_s:  # as the SSE loop: wait up to a keep-alive, then again
                assert await watcher.next_frames(0.1) == []
                count, expiries, ttl_ms = await lease_state(observer, session_id)
                at = f"after {checks} checks"
                assert count == 1, f"the lease is gone {at}"
                assert 0 < ttl_ms <= lease_ms, f"the lease set's expiry is {ttl_ms} ms {at}"
                assert time.time() < expiries[0] <= time.time() + lease_ms / 1000, at
                checks += 1
            await watcher.close()
            assert (await lease_state(observer, session_id))[0] == 0
        finally:
            await observer.aclose()
            await backend.close()

    asyncio.run(scenario())


def test_a_subscribe_whose_reader_wake_fails_gives_its_lease_back(redis_server: RedisServer) -> None:
    """A node whose wake-up write is refused (an ACL without write access to the node keys): 503,
    and the session's place is free again at once, not after the lease time."""
    async def scenario() -> None:
        admin = redis.Redis.from_url(redis_server.url)
        password = secrets.token_urlsafe(12)
        await admin.execute_command("ACL", "SETUSER", "nowake", "on", f">{password}", "+@all",
                                    "~netcheck:hub:{*", "%R~netcheck:hub:node:*")
        backend = RedisBackend(redis_server.url.replace("redis://", "redis://nowake@"), password, COMPRESSED)
        try:
            first = await backend.subscribe("wake-a", None, None)  # starts the reader: no wake needed
            await asyncio.sleep(0.2)  # the reader is blocked in its read now
            with pytest.raises(Refusal) as refused:
                await backend.subscribe("wake-b", None, None)  # a new session: the reader must be woken
            assert refused.value.status == 503
            assert (await lease_state(admin, "wake-b"))[0] == 0, "the refused watcher's lease was kept"
            await first.close()
        finally:
            await backend.close()
            await admin.execute_command("ACL", "DELUSER", "nowake")
            await admin.aclose()

    asyncio.run(scenario())


@pytest.mark.beside  # ≈ 90 s asleep: past the lease time, then until the killed node's lease runs out
def test_a_node_killed_with_sigkill_leaves_no_lease_after_the_lease_time(redis_server: RedisServer) -> None:
    lease_s = DEPLOYED.lease_keepalives * DEPLOYED.keepalive_s
    node = start_serve("--hub", redis_server.url, env=subprocess_env(NETCHECK_SECRET=SECRET))
    session_id = f"killed-{uuid.uuid4().hex[:8]}"
    watch_token = create_token(SECRET.encode(), session_id, "therapist", 3600)

    async def scenario() -> None:
        observer = redis.Redis.from_url(redis_server.url)
        try:
            async with aiohttp.ClientSession() as http:
                response = await http.get(f"{node.http_url}/v1/sessions/{session_id}/events",
                                          headers={"Authorization": f"Bearer {watch_token}"})
                assert response.status == 200
                await asyncio.sleep(lease_s + 5.0)  # past the 46 s at which the lease lost its expiry
                count, _, ttl_ms = await lease_state(observer, session_id)
                assert count == 1 and 0 < ttl_ms <= lease_s * 1000, (count, ttl_ms)
                node.process.kill()  # SIGKILL: the node gives nothing back
                node.process.wait()
                killed_s = time.monotonic()
                while await observer.exists(key(session_id, "watchers")):
                    assert time.monotonic() - killed_s <= lease_s + 0.5, "the killed node's lease outlived it"
                    await asyncio.sleep(0.25)
                print(f"lease gone {time.monotonic() - killed_s:.1f} s after SIGKILL (lease time {lease_s:g} s)")
                response.close()
        finally:
            await observer.aclose()

    try:
        asyncio.run(scenario())
    finally:
        stop(node.process)
