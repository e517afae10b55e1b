"""The Redis hub's one reader per node (redis_reader.NodeReader) against a real `redis-server`: many
sessions' watchers on one node share one blocking XREAD and one Redis connection, and each still
gets its session's events once and in order — when it joins a session the reader already reads,
replays after Last-Event-ID, falls behind, or joins while the reader is blocked.

These drive the backend directly (no HTTP: tests/test_hub_redis.py covers the nodes end to end), with
a keep-alive of 15 s as deployed, so that a watcher left out of the blocked read shows as a wait
of seconds rather than milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from collections.abc import Iterator
from typing import Any

import pytest

from netcheck.server.hub.backend import HubLimits
from netcheck.server.hub.redis_backend import RedisBackend
from tests.harness.redis_server import RedisServer

UNTIL_S = time.time() + 3600
LIMITS = HubLimits(keepalive_s=15.0, post_burst=100_000)
"""As deployed, but posts as fast as the tests send them."""
LIVE_WAIT_BOUND_S = 1.0
"""A post must reach a watcher well inside this; a watcher the blocked read left out waits ≥ 15 s."""


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer(appendfsync="everysec") as server:
        yield server


def summary(n: int) -> dict[str, Any]:
    return {"type": "summary", "at": "2026-11-29T10:00:05.000+00:00", "n": n}


def numbers(frames: list[bytes]) -> list[int]:
    """The `n` of each event in SSE frames (comments skipped)."""
    found = []
    for frame in frames:
        for line in frame.decode().splitlines():
            if line.startswith("data:"):
                found.append(json.loads(line[5:])["n"])
    return found


async def collect(watcher: Any, count: int, timeout_s: float = 10.0) -> tuple[list[int], float]:
    """The next `count` event numbers from a watcher, and how long the last one took to come."""
    got: list[int] = []
    deadline_s = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline_s:
        frames = await watcher.next_frames(min(1.0, deadline_s - time.monotonic()))
        assert frames is not None, "the stream ended"
        got += numbers(frames)
    return got, time.monotonic()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_watchers_of_many_sessions_share_one_read_connection_and_get_their_events_once(
        redis_server: RedisServer) -> None:
    async def scenario() -> None:
        backend = RedisBackend(redis_server.url, None, LIMITS)
        try:
            sessions = [f"many-{i}" for i in range(30)]
            watchers = []
            for index, session_id in enumerate(sessions):
                watchers.append(await backend.subscribe(session_id, None, None))
                if index % 10 == 9:  # the reader is blocked by now: the next sessions must wake it
                    await asyncio.sleep(0.3)
            clients = await backend.commands.client_list()
            blocked = [client for client in clients if client["cmd"] == "xread"]
            assert len(blocked) == 1, f"one blocking read for 30 watchers, got {len(blocked)}"
            # the last session joined while the reader was blocked: an event for it alone must wake it
            sent_s = time.monotonic()
            await backend.publish(sessions[-1], "client", [summary(-1)], UNTIL_S)
            got, arrived_s = await collect(watchers[-1], 1)
            assert got == [-1] and arrived_s - sent_s < LIVE_WAIT_BOUND_S, f"waited {arrived_s - sent_s:.1f} s"
            for round_number in range(5):
                sent_s = time.monotonic()
                for session_id in sessions:
                    await backend.publish(session_id, "client", [summary(round_number)], UNTIL_S)
                for session_id, watcher in zip(sessions, watchers):
                    got, arrived_s = await collect(watcher, 1)
                    assert got == [round_number], f"{session_id}: {got}"
                    assert arrived_s - sent_s < LIVE_WAIT_BOUND_S, f"{session_id} waited {arrived_s - sent_s:.1f} s"
            for watcher in watchers:
                await watcher.close()
            assert not backend.reader.read_after
        finally:
            await backend.close()

    run(scenario())


def test_a_watcher_joining_a_read_session_with_last_event_id_gets_the_replay_then_live_without_gap(
        redis_server: RedisServer) -> None:
    async def scenario() -> None:
        backend = RedisBackend(redis_server.url, None, LIMITS)
        try:
            first = await backend.subscribe("replay", None, None)
            ids = [await backend.publish("replay", "client", [summary(n)], UNTIL_S) for n in range(250)]
            got, _ = await collect(first, 250)
            assert got == list(range(250))
            # joins after the reader passed event 249, asking for everything after event 9
            second = await backend.subscribe("replay", ids[9], None)
            publishing = asyncio.ensure_future(asyncio.gather(
                *(backend.publish("replay", "therapist", [summary(n)], UNTIL_S) for n in range(250, 260))))
            got, _ = await collect(second, 250)
            await publishing
            live_in_stream_order, _ = await collect(first, 10)  # concurrent posts: Redis decides their order
            assert sorted(live_in_stream_order) == list(range(250, 260))
            assert got == list(range(10, 250)) + live_in_stream_order, "the replay then live, once, in order"
            await first.close()
            await second.close()
        finally:
            await backend.close()

    run(scenario())


def test_a_watcher_that_falls_behind_reads_again_from_redis_and_misses_nothing(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        backend = RedisBackend(redis_server.url, None, replace(LIMITS, watcher_queue_events=20))
        try:
            slow = await backend.subscribe("slow", None, None)
            brisk = await backend.subscribe("slow", None, None)
            for n in range(120):  # the slow one does not read meanwhile: its inbox overflows (20)
                await backend.publish("slow", "client", [summary(n)], UNTIL_S)
            assert (await collect(brisk, 120))[0] == list(range(120))
            assert slow.catching_up
            first_page = await slow.next_frames(1.0)
            assert not slow.fell_behind, "cut although Redis still holds every entry it missed"
            assert first_page is not None
            assert numbers(first_page) + (await collect(slow, 120 - len(numbers(first_page))))[0] == list(range(120))
            await slow.close()
            await brisk.close()
        finally:
            await backend.close()

    run(scenario())


def test_a_redis_outage_ends_every_stream_as_not_live(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        backend = RedisBackend(redis_server.url, None, LIMITS)
        try:
            watchers = [await backend.subscribe(f"outage-{i}", None, None) for i in range(3)]
            await asyncio.sleep(0.2)
            redis_server.stop()
            try:
                for watcher in watchers:
                    frames = await watcher.next_frames(5.0)
                    assert frames and frames[-1].startswith(b": not live"), frames
                    assert await watcher.next_frames(1.0) is None
                    await watcher.close()
            finally:
                redis_server.start()
            again = await backend.subscribe("outage-0", None, None)
            await backend.publish("outage-0", "client", [summary(1)], UNTIL_S)
            assert (await collect(again, 1))[0] == [1]
            await again.close()
        finally:
            await backend.close()

    run(scenario())


def test_a_watcher_whose_missed_entries_redis_trimmed_is_cut_as_fallen_behind(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        backend = RedisBackend(redis_server.url, None, replace(LIMITS, watcher_queue_events=20, history_events=10))
        try:
            slow = await backend.subscribe("trimmed", None, None)
            brisk = await backend.subscribe("trimmed", None, None)
            reading = asyncio.ensure_future(collect(brisk, 400))  # keeps up as they come
            for n in range(400):  # MAXLEN ~ 10 trims whole blocks of 100: the first 300 leave Redis
                await backend.publish("trimmed", "client", [summary(n)], UNTIL_S)
            assert (await reading)[0] == list(range(400))
            assert await slow.next_frames(1.0) is None, "its stream goes on with a gap"
            assert slow.fell_behind
            await slow.close()
            await brisk.close()
        finally:
            await backend.close()

    run(scenario())


def test_a_reader_killed_by_an_error_is_restarted_and_logged_and_its_watchers_get_every_event(
        redis_server: RedisServer) -> None:
    async def scenario() -> None:
        backend = RedisBackend(redis_server.url, None, LIMITS)
        warnings: list[str] = []
        backend.reader.warn = warnings.append
        faults = 0

        def fault() -> None:  # the next read after it is armed fails after reading, before handing out
            nonlocal faults
            faults += 1
            backend.reader.inject_fault = None
            raise RuntimeError("injected reader fault")

        try:
            watchers = [await backend.subscribe(f"fault-{i}", None, None) for i in range(3)]
            await asyncio.sleep(0.2)
            backend.reader.inject_fault = fault
            for n in range(10):
                for i in range(3):
                    await backend.publish(f"fault-{i}", "client", [summary(n)], UNTIL_S)
            for watcher in watchers:
                got, _ = await collect(watcher, 10, timeout_s=LIVE_WAIT_BOUND_S + 1.0)
                assert got == list(range(10)), got
            assert faults == 1 and backend.reader.restarts == 1
            assert len(warnings) == 1 and "injected reader fault" in warnings[0] and "restarted" in warnings[0]
            sent_s = time.monotonic()  # and it reads live again: a post after the restart comes at once
            await backend.publish("fault-0", "client", [summary(10)], UNTIL_S)
            got, arrived_s = await collect(watchers[0], 1)
            assert got == [10] and arrived_s - sent_s < LIVE_WAIT_BOUND_S
            for watcher in watchers:
                await watcher.close()
        finally:
            await backend.close()

    run(scenario())
