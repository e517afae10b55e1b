"""The session hub across nodes (issue 16): `netcheck serve --hub redis://…` nodes on loopback sharing
one real `redis-server` (tests/harness/redis_server.py), the agents' real poster (hub_client.py)
and `netcheck watch --json` as a user runs it.

  * two nodes: legs posted to A and to B reach watchers on both, once each, in order;
  * Redis stopped for 20 s and restarted: the agents' waiting events all arrive, watchers resume,
    nothing twice;
  * node A killed: a watcher behind a balancer (a TCP proxy here) reconnects to B and replays from
    its Last-Event-ID without a gap or a duplicate;
  * (fast) the limits hold across nodes, ids map onto stream ids, the URL never carries a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from netcheck.parse import parse_hub_url
from netcheck.errors import UsageError
from netcheck.session.hub_client import HubPoster
from netcheck.server.app import start_server
from netcheck.server.hub.routes import HubLimits
from netcheck.server.hub.redis_backend import RedisBackend, sse_id, stream_id
from netcheck.server.rate import TokenBuckets
from netcheck.tokens import create_token
from tests.harness.ports import HOST
from tests.harness.redis_server import RedisServer
from tests.harness.servers import ServerProcess, start_serve, stop, subprocess_env
from tests.harness.tcp import pipe
from tests.test_watch import Watch

SECRET = secrets.token_urlsafe(24)
REDIS_PASSWORD = secrets.token_urlsafe(16)
DRAIN_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer(password=REDIS_PASSWORD) as server:
        yield server


def start_node(redis: RedisServer) -> ServerProcess:
    return start_serve("--hub", redis.url, env=subprocess_env(NETCHECK_SECRET=SECRET,
                                                               NETCHECK_HUB_PASSWORD=REDIS_PASSWORD))


@pytest.fixture
def nodes(redis_server: RedisServer) -> Iterator[list[ServerProcess]]:
    started = [start_node(redis_server), start_node(redis_server)]
    yield started
    for node in started:
        stop(node.process)


def token(session_id: str, role: str) -> str:
    return create_token(SECRET.encode(), session_id, role, 3600)


def now_at() -> str:
    """The hub takes times within a day of its clock (netcheck/instants.py)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def window(index: int) -> dict[str, Any]:
    return {"type": "summary", "at": now_at(),
            "window": {"index": index, "window_s": 5.0, "recommendation": "video", "level": "good",
                       "figures": {"rtt_p95_ms": 40.0 + index}}}


def warning(cue: str, kind: str = "warning_raised") -> dict[str, Any]:
    return {"type": kind, "at": now_at(), "cue": cue, "level": "poor",
            "metric": "loss_one_way_pct" if cue == "vocal_tone" else None, "value": 8.0,
            "message": "The client's voice is breaking up.", "advice": ""}


def what(event: dict[str, Any]) -> tuple[str, object]:
    """An event as the test posted it: its leg and its window index (or its cue)."""
    return event["leg"], event["window"]["index"] if event["type"] == "summary" else event["cue"]


def assert_once_in_order(received: list[dict[str, Any]], posted: dict[str, list[object]]) -> None:
    """Every posted event exactly once, each leg in the order it posted, ids rising."""
    ids = [event["id"] for event in received]
    assert ids == sorted(set(ids)), "ids not rising, or repeated"
    for leg, expected in posted.items():
        assert [item for event_leg, item in map(what, received) if event_leg == leg] == expected, leg


async def drained(*posters: HubPoster) -> None:
    """Until every poster has delivered all it holds (a state of the posters, polled)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while any(poster.waiting or (poster._task is not None and not poster._task.done()) for poster in posters):
        assert time.monotonic() < deadline, [len(poster.waiting) for poster in posters]
        await asyncio.sleep(0.05)


async def post_directly(server_url: str, session_id: str, role: str, event: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server_url}/v1/sessions/{session_id}/events", json={"events": [event]},
                             headers={"Authorization": f"Bearer {token(session_id, role)}"}) as response:
            assert response.status == 202, await response.text()


async def events(watch: Watch, count: int, timeout_s: float = 15.0) -> list[dict[str, Any]]:
    return await asyncio.to_thread(watch.events, count, timeout_s)


async def nothing_more(watches: list[Watch], server_url: str, session_id: str) -> None:
    """A last event posted now is the next thing every watcher reads: nothing came twice before it."""
    await post_directly(server_url, session_id, "therapist", warning("lip_sync", "warning_cleared"))
    for watch in watches:
        (last,) = await events(watch, 1)
        assert what(last) == ("therapist", "lip_sync")  # a known cue: the hub refuses others (issue 23)


@contextlib.asynccontextmanager
async def balancer(*backends: ServerProcess) -> AsyncIterator[str]:
    """A TCP load balancer on loopback: each connection goes to the first backend that accepts it."""
    async def connect(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        for backend in backends:
            host, port = backend.http_url.removeprefix("http://").rsplit(":", 1)
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
            except OSError:
                continue
            await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))
            return
        client_writer.close()

    server = await asyncio.start_server(connect, HOST, 0)
    try:
        yield f"http://{HOST}:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


@pytest.mark.slow
def test_legs_on_two_nodes_reach_watchers_on_both_once_in_order(nodes: list[ServerProcess], tmp_path: Path) -> None:
    node_a, node_b = nodes
    session_id = f"s-{uuid.uuid4().hex[:12]}"

    async def body() -> None:
        watches = [Watch(node.http_url, session_id, token(session_id, "therapist"), tmp_path / name)
                   for node, name in ((node_b, "b"), (node_a, "a"))]
        client = HubPoster(node_a.http_url, session_id, token(session_id, "client"))
        therapist = HubPoster(node_b.http_url, session_id, token(session_id, "therapist"))
        try:
            for index in range(6):
                client.send([window(index)])
                therapist.send([window(index)])
                await drained(client, therapist)
            client.send([warning("vocal_tone")])  # raised from A's leg
            await drained(client, therapist)
            posted = {"client": [*range(6), "vocal_tone"], "therapist": list(range(6))}
            received = [await events(watch, 13) for watch in watches]
            for seen in received:
                assert_once_in_order(seen, posted)
            assert received[0] == received[1]  # the same ids, the same order, on B and on A
            assert any(event["type"] == "warning_raised" and event["leg"] == "client" for event in received[0])
            await nothing_more(watches, node_b.http_url, session_id)
        finally:
            await client.close()
            await therapist.close()
            for watch in watches:
                assert watch.terminate() == 0

    asyncio.run(body())


@pytest.mark.slow
def test_a_redis_outage_of_20_s_loses_no_window_and_repeats_none(redis_server: RedisServer,
                                                                    nodes: list[ServerProcess],
                                                                    tmp_path: Path) -> None:
    node_a, node_b = nodes
    session_id = f"s-{uuid.uuid4().hex[:12]}"

    async def body() -> None:
        watches = [Watch(node.http_url, session_id, token(session_id, "therapist"), tmp_path / name)
                   for node, name in ((node_b, "b"), (node_a, "a"))]
        messages: list[str] = []
        client = HubPoster(node_a.http_url, session_id, token(session_id, "client"), messages.append)
        therapist = HubPoster(node_b.http_url, session_id, token(session_id, "therapist"), messages.append)
        index = 0

        async def next_window() -> None:
            nonlocal index
            client.send([window(index)])
            therapist.send([window(index)])
            index += 1

        try:
            for _ in range(4):
                await next_window()
                await drained(client, therapist)
            before = [await events(watch, 8) for watch in watches]
            redis_server.stop()
            outage_ends_s = time.monotonic() + 20.0
            while time.monotonic() < outage_ends_s:  # the agents' windows go on: one a second
                await next_window()
                await asyncio.sleep(1.0)  # the agents' window clock, not a synchronisation
            assert client.waiting and therapist.waiting, "posts were not refused while Redis was down"
            for watch in watches:
                await asyncio.to_thread(watch.wait_stderr, "reconnecting")
            redis_server.start()
            for _ in range(2):
                await next_window()  # the next windows carry the waiting ones with them
                await drained(client, therapist)
            assert any("unavailable" in message for message in messages)
            assert any("reachable again" in message for message in messages)
            posted = {"client": list(range(index)), "therapist": list(range(index))}
            for watch, seen_before in zip(watches, before):
                assert_once_in_order(seen_before + await events(watch, 2 * index - 8, 30.0), posted)
            await nothing_more(watches, node_a.http_url, session_id)
        finally:
            if redis_server.process is None:
                redis_server.start()
            await client.close()
            await therapist.close()
            for watch in watches:
                assert watch.terminate() == 0

    asyncio.run(body())


@pytest.mark.slow
def test_a_killed_node_s_watcher_resumes_on_the_other_without_gap_or_duplicate(
        nodes: list[ServerProcess], tmp_path: Path) -> None:
    node_a, node_b = nodes
    session_id = f"s-{uuid.uuid4().hex[:12]}"

    async def body() -> None:
        async with balancer(node_a, node_b) as balanced_url:  # A while it lives, then B
            behind_balancer = Watch(balanced_url, session_id, token(session_id, "therapist"), tmp_path / "lb")
            on_b = Watch(node_b.http_url, session_id, token(session_id, "therapist"), tmp_path / "b")
            watches = [behind_balancer, on_b]
            client = HubPoster(balanced_url, session_id, token(session_id, "client"))
            therapist = HubPoster(node_b.http_url, session_id, token(session_id, "therapist"))
            try:
                for index in range(4):  # 4 + 4 + the last: at most post_burst (10) posts per leg at once
                    client.send([window(index)])
                    therapist.send([window(index)])
                    await drained(client, therapist)
                before = [await events(watch, 8) for watch in watches]
                node_a.process.kill()  # SIGKILL: no clean end of its streams
                node_a.process.wait()
                await asyncio.to_thread(behind_balancer.wait_stderr, "reconnecting")
                for index in range(4, 8):
                    client.send([window(index)])
                    therapist.send([window(index)])
                    await drained(client, therapist)
                posted = {"client": list(range(8)), "therapist": list(range(8))}
                received = [seen + await events(watch, 8) for watch, seen in zip(watches, before)]
                for seen in received:
                    assert_once_in_order(seen, posted)
                assert received[0] == received[1]
                await nothing_more(watches, node_b.http_url, session_id)
            finally:
                await client.close()
                await therapist.close()
                for watch in watches:
                    assert watch.terminate() == 0

    asyncio.run(body())


def test_sse_ids_are_stream_ids_as_one_rising_integer() -> None:
    assert sse_id(b"1795926800511-2") == 1795926800511002
    assert stream_id(1795926800511002) == "1795926800511-2"
    assert sse_id("1795926800512-0") > sse_id("1795926800511-399")
    assert sse_id("9007199254740-991") < 2**53  # year 2255: still exact in JavaScript
    assert stream_id(1795926800511) == "1795926800-511"  # an in-memory hub's id: older than any stream id


@pytest.mark.parametrize(("url", "message"), [
    ("redis://:secret@127.0.0.1:6379/0", "no password in the hub URL"),
    ("redis://user:secret@127.0.0.1/0", "no password in the hub URL"),
    ("http://127.0.0.1:6379", "use redis://HOST:PORT/N"),
    ("redis://127.0.0.1:6379/x", "database number"),
])
def test_a_hub_url_with_a_password_or_not_redis_is_refused(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as refused:
        parse_hub_url(url)
    assert "secret" not in str(refused.value)


def test_watcher_and_post_limits_hold_across_nodes(redis_server: RedisServer) -> None:
    """Two in-process nodes on one Redis: the session's watcher places and a leg's posts are counted once."""
    limits = HubLimits(max_watchers=2, post_rate_per_s=0.1, post_burst=3, keepalive_s=0.2)
    session_id = f"s-{uuid.uuid4().hex[:12]}"

    async def body() -> None:
        servers = [await start_server(secret=SECRET.encode(), hub_limits=limits, hub_url=redis_server.url,
                                      hub_password=REDIS_PASSWORD) for _ in range(2)]
        try:
            async with aiohttp.ClientSession() as http:
                watcher = {"Authorization": f"Bearer {token(session_id, 'therapist')}"}
                url = [f"{server.url}/v1/sessions/{session_id}/events" for server in servers]
                first = await http.get(url[0], headers=watcher)
                second = await http.get(url[1], headers=watcher)
                async with http.get(url[1], headers=watcher) as third:
                    assert (first.status, second.status, third.status) == (200, 200, 429)
                first.close()
                while servers[0].hub is not None and servers[0].hub.watcher_count(session_id):
                    await asyncio.sleep(0.01)  # its handler notices the hang-up and gives the place back
                async with http.get(url[0], headers=watcher) as again:
                    assert again.status == 200
                second.close()
                poster = {"Authorization": f"Bearer {token(session_id, 'client')}"}
                statuses, accepted_per_window = [], Counter[int]()
                window_s = limits.post_burst / limits.post_rate_per_s
                for index in range(7):  # alternately: each node alone would accept 3 of its own 3–4
                    async with http.post(url[index % 2], headers=poster, json={"events": [window(index)]}) as response:
                        statuses.append(response.status)
                        accepted_per_window[int(time.time() // window_s)] += response.status == 202
                assert statuses[:3] == [202] * 3 and 429 in statuses, statuses
                assert max(accepted_per_window.values()) == limits.post_burst, (statuses, accepted_per_window)
        finally:
            for server in servers:
                await server.close()

    asyncio.run(body())


def test_the_posts_rate_across_nodes_is_the_servers_one_limiter(redis_server: RedisServer) -> None:
    """The leg's bucket in Redis answers as rate.py's TokenBuckets at the same instants: the same
    admissions, the same waits (a fixed window admitted a burst at its end and another at the next's start)."""
    limits = HubLimits(post_rate_per_s=0.5, post_burst=3)
    gaps_s = [0, 0, 0, 0, 1.0, 0.9, 0.2, 2.0, 0, 0, 5.5, 0, 0, 0, 0, 0.1, 30.0, 0, 0, 0, 0, 1.999, 0.001]
    session_id = f"s-{uuid.uuid4().hex[:12]}"

    async def body() -> None:
        backend = RedisBackend(redis_server.url, REDIS_PASSWORD, limits)
        reference = TokenBuckets(limits.post_rate_per_s, limits.post_burst)
        now_s = time.time()
        try:
            for index, gap_s in enumerate(gaps_s):
                now_s += gap_s
                last_id, wait_s = await backend.post(session_id, "client", [window(index)], now_s + 3600, now_s)
                expected_s = reference.take("client", now_s)
                assert wait_s == pytest.approx(expected_s, rel=1e-9, abs=1e-9), (index, wait_s, expected_s)
                assert bool(last_id) == (expected_s == 0.0), index
        finally:
            await backend.close()

    asyncio.run(body())
