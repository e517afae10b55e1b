"""The session hub over real HTTP on loopback: the auth matrix, limits, the SSE stream, and shutdown.

Each test starts its own server in-process (`start_server(..., secret=...)`), with shortened
limits where the contract's would make a test slow; the CLI tests run `netcheck` as a user would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import aiohttp
import pytest

from netcheck.server.app import RunningServer, start_server
from netcheck.server.hub.routes import HubLimits
from netcheck.tokens import CLOCK_SKEW_S, create_token, verify_token
from tests.harness.servers import start_serve, stop, subprocess_env

SECRET = b"hub-test-secret-0123456789"
TEST_TIMEOUT_S = 20.0


def run(test: Callable[[], Awaitable[None]]) -> None:
    """Plain pytest functions run their async body here, bounded so a hung stream fails instead of hanging."""
    async def bounded() -> None:
        await asyncio.wait_for(test(), TEST_TIMEOUT_S)

    asyncio.run(bounded())


def token(session_id: str, role: str, ttl_s: float = 3600, now_s: float | None = None,
          secret: bytes = SECRET) -> str:
    return create_token(secret, session_id, role, ttl_s, now_s)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def events_url(server: RunningServer, session_id: str) -> str:
    return f"{server.url}/v1/sessions/{session_id}/events"


def now_at() -> str:
    """The hub takes times within a day of its clock (netcheck/instants.py)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def warning(**fields: Any) -> dict[str, Any]:
    return {"type": "warning_raised", "at": now_at(), "cue": "vocal_tone", "level": "poor",
            "metric": "loss_pct", "value": 8.0, "message": "The client's voice is breaking up.", "advice": "", **fields}


def summary(index: int = 0, **fields: Any) -> dict[str, Any]:
    return {"type": "summary", "at": now_at(),
            "window": {"index": index, "window_s": 5.0, "recommendation": "video", "level": "good",
                       "figures": {"rtt_p95_ms": 48.0, "loss_pct": None}}, **fields}


@asynccontextmanager
async def hub(limits: HubLimits = HubLimits()) -> AsyncIterator[tuple[RunningServer, aiohttp.ClientSession]]:
    server = await start_server("127.0.0.1", 0, 0, secret=SECRET,
                                hub_limits=dataclasses.replace(limits, ids_from_clock=False))  # ids 1, 2, 3 …
    try:
        async with aiohttp.ClientSession() as http:
            yield server, http
    finally:
        await server.close()


async def post(http: aiohttp.ClientSession, server: RunningServer, session_id: str, role: str | None,
               body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    headers = headers if headers is not None else bearer(token(session_id, role or "client"))
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(events_url(server, session_id), data=data, headers=headers) as response:
        return response.status, await response.json()


async def read_message(response: aiohttp.ClientResponse, timeout_s: float = 5.0) -> bytes:
    """One SSE message or comment, raw, up to and including its blank line; b"" at the end of the stream."""
    try:
        return await asyncio.wait_for(response.content.readuntil(b"\n\n"), timeout_s)
    except asyncio.IncompleteReadError as error:
        return error.partial


def parse_message(raw: bytes) -> dict[str, Any]:
    lines = raw.decode("ascii").rstrip("\n").split("\n")
    assert [line.split(":", 1)[0] for line in lines] == ["id", "event", "data"], raw
    fields = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in lines}
    event: dict[str, Any] = json.loads(fields["data"])
    assert str(event["id"]) == fields["id"] and event["type"] == fields["event"]
    return event


async def next_event(response: aiohttp.ClientResponse) -> dict[str, Any]:
    while True:
        raw = await read_message(response)
        assert raw, "stream ended"
        if not raw.startswith(b":"):
            return parse_message(raw)


# --- the auth matrix -------------------------------------------------------------------------------------

REFUSED_401 = {
    "missing": {},
    "malformed": bearer("v1.not-a-token"),
    "not bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
    "bad signature": bearer(token("s1", "therapist", secret=b"some-other-secret-0123456789")),
    "expired": bearer(token("s1", "therapist", ttl_s=60, now_s=time.time() - 60 - CLOCK_SKEW_S - 5)),
    "other session": bearer(token("s2", "therapist")),
}


def test_auth_matrix_every_refusal_and_both_posting_roles() -> None:
    async def body() -> None:
        async with hub() as (server, http):
            url = events_url(server, "s1")
            for case, headers in REFUSED_401.items():
                for method in ("POST", "GET"):
                    async with http.request(method, url, headers=headers, json={"events": [warning()]}) as response:
                        assert response.status == 401, (case, method)
                        assert "error" in await response.json()
                        assert response.headers["WWW-Authenticate"].startswith("Bearer")
            async with http.get(url, headers=bearer(token("s1", "client"))) as response:
                assert response.status == 403
                assert "therapist" in (await response.json())["error"]
            accepted = await post(http, server, "s1", "client", {"events": [warning()]})
            assert accepted == (202, {"accepted": 1, "last_id": 1})
            assert await post(http, server, "s1", "therapist", {"events": [warning(), summary()]}) == (
                202, {"accepted": 2, "last_id": 3})

    run(body)


def test_refusal_reasons_are_in_the_error() -> None:
    async def body() -> None:
        async with hub() as (server, http):
            for case in ("malformed", "bad signature", "expired", "other session"):
                status, answer = await post(http, server, "s1", None, {"events": [warning()]}, REFUSED_401[case])
                assert (status, answer["error"]) == (401, f"token refused: {case.replace('not bearer', 'malformed')}")
            status, answer = await post(http, server, "s1", None, {"events": [warning()]}, {})
            assert status == 401 and answer["error"].startswith("missing token")

    run(body)


def test_hub_without_a_secret_is_404_and_info_says_so() -> None:
    async def body() -> None:
        server = await start_server("127.0.0.1", 0, 0)
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{server.url}/v1/info") as response:
                    assert (await response.json())["sessions"] is False
                async with http.post(events_url(server, "s1"), headers=bearer(token("s1", "client")),
                                     json={"events": [warning()]}) as response:
                    assert response.status == 404
                    assert "secret" in (await response.json())["error"]
        finally:
            await server.close()

    run(body)


# --- bodies ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "status", "message"), [
    (b"x" * (64 * 1024 + 1), 413, "larger than 65536 bytes"),
    (b"{not json", 400, "not JSON"),
    (b'{"events": [{"type": "summary", "at": "x", "window": {"v": NaN}}]}', 400, "not JSON"),
    (b'{"events": [{"type": "summary", "at": "x", "window": {"v": 1e999}}]}', 400, "out of range"),
    (b"[" * 30000 + b"]" * 30000, 400, "not JSON"),
    ({"events": []}, 400, "1..20 events"),
    ({"events": [warning()] * 21}, 400, "1..20 events"),
    ({"evnts": [warning()]}, 400, "1..20 events"),
    ({"events": [{"type": "hello", "at": "x"}]}, 400, "events[0].type: unknown event type 'hello'"),
    ({"events": [warning(), warning(level="terrible")]}, 400, "events[1].level"),
    ({"events": [warning(value="8")]}, 400, "events[0].value"),
    ({"events": [warning(at=None)]}, 400, "events[0].at"),
    ({"events": [summary(window="x")]}, 400, "events[0].window: must be an object"),
    ({"events": [summary(window={"blob": ["y" * 400] * 11})]}, 400, "more than 4096 bytes"),
    ({"events": [summary(window={"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}})]}, 400, "nested"),
])
def test_malformed_bodies(body: Any, status: int, message: str) -> None:
    async def check() -> None:
        async with hub() as (server, http):
            answer_status, answer = await post(http, server, "s1", "client", body)
            assert answer_status == status
            assert message in answer["error"]

    run(check)


def test_a_body_that_arrives_too_slowly_is_refused() -> None:
    async def body() -> None:
        async with hub(HubLimits(body_timeout_s=0.3)) as (server, http):
            async def trickle() -> AsyncIterator[bytes]:
                yield b'{"events": '
                await asyncio.sleep(2)
                yield b"[]}"

            async with http.post(events_url(server, "s1"), data=trickle(),
                                 headers=bearer(token("s1", "client"))) as response:
                assert response.status == 408

    run(body)


# --- limits ----------------------------------------------------------------------------------------------

def test_posts_are_rate_limited_per_leg() -> None:
    async def body() -> None:
        async with hub() as (server, http):
            statuses = [(await post(http, server, "s1", "client", {"events": [warning()]}))[0] for _ in range(11)]
            assert statuses == [202] * 10 + [429]  # the burst, then 2/s
            assert (await post(http, server, "s1", "therapist", {"events": [warning()]}))[0] == 202  # other leg
            assert (await post(http, server, "s2", "client", {"events": [warning()]}))[0] == 202  # other session
            await asyncio.sleep(0.6)
            assert (await post(http, server, "s1", "client", {"events": [warning()]}))[0] == 202

    run(body)


def test_at_most_8_watchers_per_session() -> None:
    async def body() -> None:
        async with hub() as (server, http):
            headers = bearer(token("s1", "therapist"))
            watchers = [await http.get(events_url(server, "s1"), headers=headers) for _ in range(8)]
            assert [watcher.status for watcher in watchers] == [200] * 8
            async with http.get(events_url(server, "s1"), headers=headers) as ninth:
                assert ninth.status == 429
            async with http.get(events_url(server, "s2"), headers=bearer(token("s2", "therapist"))) as other:
                assert other.status == 200
            watchers.pop().close()  # hangs up: its place is free again
            for _ in range(50):
                async with http.get(events_url(server, "s1"), headers=headers) as again:
                    if again.status == 200:
                        break
                await asyncio.sleep(0.05)
            assert again.status == 200
            for watcher in watchers:
                watcher.close()

    run(body)


def test_at_most_n_live_sessions_and_idle_ones_make_room() -> None:
    async def body() -> None:
        async with hub(HubLimits(max_sessions=3, session_idle_s=0.3)) as (server, http):
            for session_id in ("a", "b", "c"):
                assert (await post(http, server, session_id, "client", {"events": [warning()]}))[0] == 202
            status, answer = await post(http, server, "d", "client", {"events": [warning()]})
            assert status == 503 and "too many live sessions" in answer["error"]
            await asyncio.sleep(0.4)
            assert (await post(http, server, "d", "client", {"events": [warning()]}))[0] == 202

    run(body)


# --- the stream ------------------------------------------------------------------------------------------

def test_stream_delivers_both_legs_in_order_with_the_leg_from_the_token() -> None:
    async def body() -> None:
        async with hub() as (server, http):
            async with http.get(events_url(server, "s1"), headers=bearer(token("s1", "therapist"))) as stream:
                assert stream.status == 200
                assert stream.headers["Content-Type"] == "text/event-stream"
                claimed = summary(leg="therapist", id=999, session_id="evil", surprise="dropped")
                await post(http, server, "s1", "client", {"events": [claimed]})
                await post(http, server, "s1", "therapist", {"events": [warning(message="m" * 600)]})
                await post(http, server, "s1", "client", {"events": [warning(type="warning_cleared", level="good")]})
                raw = await read_message(stream)
                assert raw.startswith(b'id: 1\nevent: summary\ndata: {"type":"summary","id":1,"session_id":"s1",'
                                      b'"leg":"client"')
                first = parse_message(raw)
                assert "surprise" not in first and first["window"]["figures"]["loss_pct"] is None
                second, third = await next_event(stream), await next_event(stream)
                assert [(event["id"], event["leg"], event["type"]) for event in (first, second, third)] == [
                    (1, "client", "summary"), (2, "therapist", "warning_raised"), (3, "client", "warning_cleared")]
                assert second["message"] == "Your connection is poor for vocal tone."  # the hub's words, not the body's

    run(body)


def test_last_event_id_replays_what_the_hub_still_holds_then_live_events() -> None:
    async def body() -> None:
        async with hub(HubLimits(history_events=5)) as (server, http):
            await post(http, server, "s1", "client", {"events": [summary(index) for index in range(8)]})
            headers = bearer(token("s1", "therapist"))
            async with http.get(events_url(server, "s1"), headers={**headers, "Last-Event-ID": "5"}) as stream:
                assert [(await next_event(stream))["id"] for _ in range(3)] == [6, 7, 8]
                await post(http, server, "s1", "therapist", {"events": [warning()]})
                assert (await next_event(stream))["id"] == 9
            async with http.get(events_url(server, "s1"), headers={**headers, "Last-Event-ID": "0"}) as stream:
                assert [(await next_event(stream))["id"] for _ in range(5)] == [5, 6, 7, 8, 9]  # the last 5 held
            async with http.get(events_url(server, "s1"), headers={**headers, "Last-Event-ID": "70000"}) as stream:
                assert (await next_event(stream))["id"] == 5  # newer than any we issued: we restarted, so all

    run(body)


def test_keep_alive_comment_on_schedule() -> None:
    async def body() -> None:
        async with hub(HubLimits(keepalive_s=0.2)) as (server, http):
            async with http.get(events_url(server, "s1"), headers=bearer(token("s1", "therapist"))) as stream:
                started_s = time.monotonic()
                assert await read_message(stream, timeout_s=2) == b": keep-alive\n\n"
                assert await read_message(stream, timeout_s=2) == b": keep-alive\n\n"
                assert 0.3 <= time.monotonic() - started_s < 1.5

    run(body)


def test_stream_ends_when_the_token_expires() -> None:
    async def body() -> None:
        expiring = token("s1", "therapist", ttl_s=60, now_s=time.time() - 60 - CLOCK_SKEW_S + 2)
        ends_at_s = verify_token(SECRET, expiring, "s1").accepted_until_s
        async with hub(HubLimits(keepalive_s=0.5)) as (server, http):
            async with http.get(events_url(server, "s1"), headers=bearer(expiring)) as stream:
                assert stream.status == 200
                while await read_message(stream):
                    pass
                assert abs(time.time() - ends_at_s) < 1.0

    run(body)


def test_closing_the_server_ends_open_streams_promptly() -> None:
    async def body() -> None:
        server = await start_server("127.0.0.1", 0, 0, secret=SECRET)
        async with aiohttp.ClientSession() as http:
            headers = bearer(token("s1", "therapist"))
            streams = [await http.get(events_url(server, "s1"), headers=headers) for _ in range(3)]
            started_s = time.monotonic()
            await server.close()
            assert time.monotonic() - started_s < 2.0
            for stream in streams:
                assert await read_message(stream, timeout_s=2) == b""
                stream.close()

    run(body)


def test_a_watcher_that_never_reads_is_dropped_and_others_miss_nothing() -> None:
    """Its queue is bounded: once full the hub cuts it off instead of holding ever more frames for it."""
    async def body() -> None:
        limits = HubLimits(watcher_queue_events=20, post_rate_per_s=1e6, post_burst=10**6)
        async with hub(limits) as (server, http):
            headers = bearer(token("s1", "therapist"))
            deaf = socket.socket()
            deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            deaf.setblocking(False)
            await asyncio.get_running_loop().sock_connect(deaf, ("127.0.0.1", server.http_port))
            deaf.send(f"GET /v1/sessions/s1/events HTTP/1.1\r\nHost: x\r\n"
                      f"Authorization: {headers['Authorization']}\r\n\r\n".encode())
            session_hub = server.hub
            assert session_hub is not None
            async with http.get(events_url(server, "s1"), headers=headers) as reader:
                while session_hub.watcher_count("s1") < 2:
                    await asyncio.sleep(0.01)
                bulky = {"blob": "y" * 480, "more": ["z" * 480] * 7}
                received: list[int] = []
                posted = 0
                while session_hub.watcher_count("s1") == 2 and posted < 20_000:
                    status, _ = await post(http, server, "s1", "client", {"events": [summary(window=bulky)] * 14})
                    assert status == 202  # 14 × 4 KiB: under the 64 KiB body limit
                    posted += 14
                    while len(received) < posted:
                        received.append((await next_event(reader))["id"])
                assert session_hub.watcher_count("s1") == 1, "the deaf watcher was never dropped"
                assert received == list(range(1, posted + 1))
            assert await _drain_until_closed(deaf) < posted * 4096, "the hub went on sending to it"
            deaf.close()
            # the node's own metrics (netcheck_server) count it: one watcher cut for falling behind
            for _ in range(500):  # its handler ends once its cut socket fails a write
                if session_hub.counters.watchers_dropped:
                    break
                await asyncio.sleep(0.01)
            counters = session_hub.counters
            assert counters.watchers_dropped == 1, counters  # the reader that left is not "dropped"
            assert (counters.posts_accepted, counters.events_published, counters.posts_refused) == (
                posted // 14, posted, 0), counters

    run(body)


async def _drain_until_closed(sock: socket.socket) -> int:
    """Read what reached the socket before the hub cut it off; the byte count."""
    total = 0
    loop = asyncio.get_running_loop()
    try:
        while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 5):
            total += len(chunk)
    except ConnectionResetError:
        pass
    return total


# --- the CLI ---------------------------------------------------------------------------------------------

CLI_SECRET = "cli-test-secret-0123456789"
RunCli = Callable[..., "subprocess.CompletedProcess[str]"]


def test_token_create_prints_one_verifiable_line(run_cli: RunCli) -> None:
    result = run_cli("token", "create", "--session", "room-7.a_b", "--role", "therapist", "--ttl", "2h",
                     extra_env={"NETCHECK_SECRET": CLI_SECRET})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and result.stderr == ""
    claims = verify_token(CLI_SECRET.encode(), result.stdout.strip(), "room-7.a_b")
    assert claims.role == "therapist"
    assert abs(claims.expires_at_s - time.time() - 7200) < 30


@pytest.mark.parametrize(("args", "env", "message"), [
    (("--session", "s1", "--role", "client"), {}, "NETCHECK_SECRET"),
    (("--session", "s 1", "--role", "client"), {"NETCHECK_SECRET": CLI_SECRET}, "--session"),
    (("--session", "s1", "--role", "admin"), {"NETCHECK_SECRET": CLI_SECRET}, "--role"),
    (("--session", "s1", "--role", "client", "--ttl", "30s"), {"NETCHECK_SECRET": CLI_SECRET}, "--ttl"),
    (("--session", "s1", "--role", "client", "--ttl", "8d"), {"NETCHECK_SECRET": CLI_SECRET}, "--ttl"),
    (("--session", "s1", "--role", "client", "--ttl", "soon"), {"NETCHECK_SECRET": CLI_SECRET}, "--ttl"),
])
def test_token_create_refusals_are_one_line_exit_2(run_cli: RunCli, args: tuple[str, ...], env: dict[str, str],
                                                   message: str) -> None:
    result = run_cli("token", "create", *args, extra_env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    if message == "NETCHECK_SECRET":
        assert "secret_file" in lines[0]


def test_serve_with_a_secret_runs_the_hub() -> None:
    served = start_serve(env=subprocess_env(NETCHECK_SECRET=CLI_SECRET))
    try:
        async def body() -> None:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{served.http_url}/v1/info") as response:
                    assert (await response.json())["sessions"] is True
                client = create_token(CLI_SECRET.encode(), "s1", "client", 600)
                async with http.post(f"{served.http_url}/v1/sessions/s1/events", headers=bearer(client),
                                     json={"events": [warning()]}) as response:
                    assert response.status == 202

        run(body)
    finally:
        stop(served.process)


def test_event_ids_keep_rising_across_a_server_restart() -> None:
    """A watcher reconnecting to a restarted hub sends its old Last-Event-ID: every new event must be newer."""
    async def first_id() -> int:
        server = await start_server("127.0.0.1", 0, 0, secret=SECRET)
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{server.url}/v1/sessions/s1/events", json={"events": [summary()]},
                                     headers=bearer(token("s1", "client"))) as response:
                    return (await response.json())["last_id"]
        finally:
            await server.close()

    before = asyncio.run(first_id())
    after = asyncio.run(first_id())
    assert after > before > 1_700_000_000_000
