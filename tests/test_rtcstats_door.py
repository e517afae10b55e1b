"""The rtcstats door (issue 25): Jitsi Meet's `@jitsi/rtcstats` WebSocket, against a loopback `netcheck serve`
in this process, with a real WebSocket client (aiohttp) replaying the messages the real npm client sent
(tests/rtcstats/jitsi_call.jsonl: its own trace-ws.js and rtcstats.js run under Node by
tests/rtcstats/make_fixtures.py, its getstats delta-compressed by its own `deltaCompression`). A bound
room's participant is judged as the session's call leg (`source=call`); an unbound room, a wrong or
expired token or binding, oversized messages, floods and malformed deltas are refused or dropped at a
bounded cost, counted, and nothing of them is stored."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from netcheck.server.app import RTCSTATS_DOOR, SESSION_CALLS, RunningServer, start_server
from netcheck.server.checks import CheckSettings
from netcheck.server.legs.rtcstats import ENTRY_BURST, MAX_DROPPED_IN_A_ROW, PROTOCOL, door_status
from netcheck.tokens import create_token

SECRET = b"a secret of the rtcstats door tests, long enough"
SESSION = "r" * 32
ORIGIN = "https://meet.example-clinic.org"
FIXTURE = Path(__file__).parent / "rtcstats" / "jitsi_call.jsonl"
ROOM = "therapy-room-42"


def recorded() -> list[dict[str, Any]]:
    """The messages the real client sent, in order (the first line is its URL and subprotocol)."""
    lines = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    assert lines[0]["protocol"] == PROTOCOL and f"/{ROOM}?statsSessionId=" in lines[0]["url"]
    return [line["sent"] for line in lines[1:]]


def entry(message: dict[str, Any]) -> list[Any]:
    return json.loads(message["data"])


def with_entry(message: dict[str, Any], data: list[Any]) -> dict[str, Any]:
    return {**message, "data": json.dumps(data)}


@asynccontextmanager
async def node(tmp_path: Path) -> AsyncIterator[tuple[RunningServer, aiohttp.ClientSession]]:
    server = await start_server("127.0.0.1", 0, 0, secret=SECRET, checks=CheckSettings(tmp_path / "node.db"),
                                call_origins=(ORIGIN,))
    try:
        async with aiohttp.ClientSession() as http:
            yield server, http
    finally:
        await server.close()


async def bind(http: aiohttp.ClientSession, server: RunningServer, body: dict[str, Any] | None = None,
               token: str | None = None, room: str = ROOM) -> tuple[int, dict[str, Any]]:
    token = token if token is not None else create_token(SECRET, SESSION, "therapist", 3600)
    body = body if body is not None else {"expires_s": 7200, "client_name": "Client", "therapist_name": "Dr. Rivera"}
    async with http.put(f"{server.url}/v1/sessions/{SESSION}/rooms/{room}", json=body,
                        headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, await response.json()


def door_url(server: RunningServer, room: str = ROOM) -> str:
    return f"{server.url.replace('http', 'ws', 1)}/v1/rtcstats/{room}?statsSessionId=s-1&isReconnect=false"


async def connect(http: aiohttp.ClientSession, server: RunningServer, room: str = ROOM) -> aiohttp.ClientWebSocketResponse:
    """The client's handshake: its subprotocol and origin; it sends nothing before the server's `sn`."""
    ws = await http.ws_connect(door_url(server, room), protocols=(PROTOCOL,), origin=ORIGIN)
    assert ws.protocol == PROTOCOL
    assert await ws.receive_json(timeout=5) == {"type": "sn", "body": {"value": 0, "state": "initial"}}
    return ws


def published(server: RunningServer) -> list[dict[str, Any]]:
    session = server.hub.backend.sessions.get(SESSION)  # type: ignore[union-attr]  # MemoryBackend
    history = session.history if session is not None else []
    return [json.loads(frame.decode().split("data: ", 1)[1].split("\n", 1)[0]) for _, frame in history]


def door(server: RunningServer) -> Any:
    return server.runner.app[RTCSTATS_DOOR]


async def settle(server: RunningServer, predicate: Any) -> None:
    for _ in range(100):
        if predicate():
            return
        await asyncio.sleep(0.02)


def nothing_stored(server: RunningServer) -> None:
    assert published(server) == []
    assert server.checks.store.session_events(SESSION) == []  # type: ignore[union-attr]
    assert server.runner.app[SESSION_CALLS].counters.judged == 0


def test_a_bound_rooms_participant_is_judged_as_the_sessions_call_leg(tmp_path: Path) -> None:
    async def run() -> None:
        async with node(tmp_path) as (server, http):
            assert (await bind(http, server))[0] == 200
            ws = await connect(http, server)
            for message in recorded():
                await ws.send_str(json.dumps(message))
            await settle(server, lambda: door(server).counters.windows == 7)
            status = door_status(door(server))
            assert status["windows"] == 7 and status["dropped"] == {}, status  # 7 getstats: a baseline, 6 windows
            events = published(server)
            assert {event["source"] for event in events} == {"call"}
            summaries = [event for event in events if event["type"] == "summary"]
            assert [s["window"]["index"] for s in summaries] == [0, 1, 2, 3, 4, 5]
            assert {s["leg"] for s in summaries} == {"client"}
            assert summaries[0]["window"]["cues"]["vocal_tone"]["level"] == "good"
            assert summaries[-1]["window"]["cues"]["vocal_tone"]["level"] == "poor"
            [raised] = [event for event in events if event["type"] == "warning_raised"]
            assert raised["cue"] == "vocal_tone" and raised["leg"] == "client" and raised["source"] == "call"
            assert raised["message"].startswith("The client's voice is breaking up"), raised
            stored = server.checks.store.session_events(SESSION)  # type: ignore[union-attr]
            assert stored and {event["source"] for event in stored} == {"call"}
            await ws.close()

    asyncio.run(run())


def test_a_participant_the_binding_does_not_name_is_not_judged_as_the_client(tmp_path: Path) -> None:
    async def run() -> None:
        async with node(tmp_path) as (server, http):
            await bind(http, server, {"expires_s": 7200, "therapist_name": "Dr. Rivera"})  # no client named
            ws = await connect(http, server)
            for message in recorded():
                await ws.send_str(json.dumps(message))
            await settle(server, lambda: door(server).counters.participant_entries == 7)
            assert door(server).counters.participant_entries == 7
            nothing_stored(server)
            await ws.close()

    asyncio.run(run())


def test_bind_api_refuses_wrong_expired_and_client_tokens_and_an_unbound_or_expired_room_is_refused(
        tmp_path: Path) -> None:
    async def run() -> None:
        async with node(tmp_path) as (server, http):
            other = create_token(b"another node's secret, long enough....", SESSION, "therapist", 3600)
            expired = create_token(SECRET, SESSION, "therapist", 60, now_s=time.time() - 3600)
            client = create_token(SECRET, SESSION, "client", 3600)
            assert [(await bind(http, server, token=token))[0] for token in (other, expired, client)] == [401, 401, 403]
            assert (await bind(http, server, {"expires_s": 1}))[0] == 400
            for room in (ROOM, "another-room"):  # nothing bound yet; then a room never bound
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await connect(http, server, room)
                assert refused.value.status == 403
                if room == ROOM:
                    assert (await bind(http, server))[0] == 200
            bindings = door(server).rooms.rooms
            bindings[ROOM] = dataclasses.replace(bindings[ROOM], expires_at_s=time.time() - 1)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await connect(http, server)
            assert refused.value.status == 403
            assert door(server).counters.refused == {"unbound_room": 3}
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # a web page of another origin
                await http.ws_connect(door_url(server), protocols=(PROTOCOL,), origin="https://evil.example")
            assert refused.value.status == 403
            nothing_stored(server)

    asyncio.run(run())


def test_a_binding_that_expires_mid_call_ends_the_conference_and_nothing_more_is_judged(tmp_path: Path) -> None:
    async def run() -> None:
        async with node(tmp_path) as (server, http):
            await bind(http, server)
            ws = await connect(http, server)
            messages = recorded()
            for message in messages[:5]:  # identity, create, constraints, two getstats: one window
                await ws.send_str(json.dumps(message))
            await settle(server, lambda: door(server).counters.windows == 2)
            bindings = door(server).rooms.rooms
            bindings[ROOM] = dataclasses.replace(bindings[ROOM], expires_at_s=time.time() - 1)
            await ws.send_str(json.dumps(messages[5]))
            closed = await ws.receive(timeout=5)
            assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 1008
            assert door(server).counters.dropped == {"binding_expired": 1}
            assert server.runner.app[SESSION_CALLS].counters.judged == 1

    asyncio.run(run())


def test_a_10_mb_message_closes_the_connection_unread_and_nothing_is_stored(tmp_path: Path) -> None:
    async def run() -> None:
        async with node(tmp_path) as (server, http):
            await bind(http, server)
            identity, *_ = recorded()
            for size in (10_000_000, 300_000):  # and one just over the door's 256 kB (aiohttp's own default is 4 MB)
                ws = await connect(http, server)
                await ws.send_str(json.dumps(identity))
                huge = {**identity, "type": "stats-entry", "data": json.dumps(["getstats", "PC_0", {"x": "y" * size}])}
                try:  # the node closes (1009) on the frame's header; the rest of the 10 MB may meet a reset
                    await ws.send_str(json.dumps(huge))
                    closed = await ws.receive(timeout=10)
                    assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
                except ConnectionError:
                    pass
                await settle(server, lambda: not door(server).open)
                assert not door(server).open
            assert door(server).counters.dropped == {"too_large": 2}
            nothing_stored(server)

    asyncio.run(run())


def test_1000_entries_a_second_are_dropped_unparsed_and_the_flood_is_disconnected(tmp_path: Path) -> None:
    async def run() -> None:
        async with node(tmp_path) as (server, http):
            await bind(http, server, {"expires_s": 7200, "therapist_name": "Dr. Rivera"})
            ws = await connect(http, server)
            messages = recorded()
            getstats = messages[4]
            started = time.monotonic()
            sent = 0
            try:
                for _ in range(1000):  # within about a second
                    await ws.send_str(json.dumps(getstats))
                    sent += 1
            except ConnectionResetError:
                pass
            closed = await ws.receive(timeout=10)
            while closed.type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                closed = await ws.receive(timeout=10)
            elapsed_s = time.monotonic() - started
            assert closed.data == 1008, closed
            counters = door(server).counters
            taken = counters.participant_entries
            assert taken <= ENTRY_BURST + 20 * elapsed_s + 1, (taken, elapsed_s)
            # closed after a run of MAX_DROPPED_IN_A_ROW drops; on a busy machine the flood is slower than
            # the test's 1000 a second, the bucket refills meanwhile, an entry is taken and the run starts
            # again (a full run in stop 31's phase 1: 252 dropped) — so at least that many, and every entry
            # read was either taken or dropped
            assert MAX_DROPPED_IN_A_ROW <= counters.dropped["rate"] <= sent - taken, (counters.dropped, taken, sent)
            nothing_stored(server)

    asyncio.run(run())


def test_malformed_deltas_are_dropped_with_a_counted_reason_and_never_stored(tmp_path: Path) -> None:
    async def run() -> None:
        async with node(tmp_path) as (server, http):
            await bind(http, server)
            ws = await connect(http, server)
            identity, _, _, first, second, *_ = recorded()
            method, pc, payload, at, seq = entry(second)
            bad = [
                with_entry(second, [method, pc, {"IT01Xnever": {"packetsReceived": 5}, "timestamp": payload["timestamp"]}, at, seq]),
                with_entry(second, [method, pc, "not an object", at, seq]),
                with_entry(second, [method, pc, {k: v for k, v in payload.items() if k != "timestamp"}, at, seq]),
                with_entry(second, [method, pc, {**payload, "IT01A2471109532": {"packetsReceived": -3}}, at, seq]),
                with_entry(second, [method, "PC_9 with spaces", payload, at, seq]),
                {**second, "data": "[not json"},
            ]
            await ws.send_str(json.dumps(identity))
            await ws.send_str(json.dumps(first))  # the baseline
            for message in bad:
                await ws.send_str(json.dumps(message))
            await settle(server, lambda: sum(door(server).counters.dropped.values()) == len(bad))
            assert door(server).counters.dropped == {"unknown_report": 1, "malformed_delta": 2, "bad_entry": 1,
                                                     "malformed_message": 2}
            for extra in range(5):
                await ws.send_str(json.dumps(with_entry(second, [method, f"PC_{extra + 1}", entry(first)[2], at, seq])))
            await settle(server, lambda: door(server).counters.dropped.get("too_many_peers") == 2)
            assert door(server).counters.dropped["too_many_peers"] == 2  # 4 connections followed at most
            nothing_stored(server)

    asyncio.run(run())


def test_bind_room_cli_binds_the_room_and_says_why_it_could_not_in_one_line(tmp_path: Path) -> None:
    async def cli(*args: str, secret: bytes = SECRET) -> tuple[int, str, str]:
        env = {**os.environ, "NETCHECK_SECRET": secret.decode(), "NETCHECK_HOME": str(tmp_path / "home")}
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "netcheck", "session", "bind-room", *args,
                                                       env=env, stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode or 0, out.decode(), err.decode()

    async def run() -> None:
        async with node(tmp_path) as (server, http):
            code, out, _ = await cli(SESSION, ROOM, "--node", server.url, "--expires", "2h", "--client-name", "Client")
            assert code == 0 and f"room {ROOM} bound to session {SESSION}" in out and "named: client" in out, out
            await (await connect(http, server)).close()  # the door now opens for the room
            code, _, err = await cli(SESSION, ROOM, "--node", server.url, secret=b"another secret, long enough....")
            assert code == 1 and err.strip().count("\n") == 0 and "bad signature" in err, err
            code, _, err = await cli(SESSION, ROOM, "--node", "ftp://nowhere")
            assert code == 2 and "Traceback" not in err, err

    asyncio.run(run())
