"""`netcheck watch`: SSE framing and event rules, the folded state, notifications, and the command
against a real `netcheck serve` with a secret (events posted as an agent posts them)."""

from __future__ import annotations

import asyncio
import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from io import StringIO
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from netcheck.model import Cue
from netcheck.quality.warnings import warning_text
from netcheck.session.notify import Notifier, should_notify
from netcheck.store.local import LocalStore
from netcheck.tokens import create_token
from netcheck.session.watch import (
    ConnectionStatus, LineSplitter, SseMessage, SseParser, StreamBroken, WatchState, follow_events, next_backoff_s,
    parse_event,
)
from tests.harness.servers import REPO, ServerProcess, start_serve, stop, subprocess_env
from tests.harness.ports import free_port

SECRET = "watch-test-secret-0123456789"
CUES = ("facial_expression", "vocal_tone", "conversational_timing", "lip_sync")


def now_iso(offset_s: float = 0.0) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=offset_s)).isoformat(timespec="milliseconds")


def summary(rtt_ms: float = 48.0, loss_pct: float = 2.5, level: str = "fair", at: str | None = None) -> dict[str, Any]:
    """An agent's summary event as it posts it (no id, leg or session_id)."""
    cues = {cue: {"level": "good", "deciding_metric": "video_fps", "value": 29.8, "unit": "fps"} for cue in CUES}
    cues["vocal_tone"] = {"level": level, "deciding_metric": "loss_one_way_pct", "value": loss_pct, "unit": "%"}
    cues["conversational_timing"] = {"level": "good", "deciding_metric": "rtt_p95_ms", "value": rtt_ms, "unit": "ms"}
    cues["lip_sync"] = {"level": "unknown", "deciding_metric": None, "value": None, "unit": None}
    return {"type": "summary", "at": at or now_iso(), "window": {
        "index": 3, "window_s": 5.0, "recommendation": "video", "level": level, "cues": cues,
        "figures": {"rtt_p95_ms": rtt_ms, "jitter_one_way_ms": 3.1, "loss_one_way_pct": loss_pct, "mos": 4.1}}}


def warning(kind: str = "warning_raised", message: str = "The client's voice is breaking up.",
            at: str | None = None) -> dict[str, Any]:
    return {"type": kind, "at": at or now_iso(), "cue": "vocal_tone", "level": "poor" if kind == "warning_raised" else "good",
            "metric": "loss_one_way_pct", "value": 8.0, "message": message,
            "advice": "Check in verbally on how things land." if kind == "warning_raised" else ""}


def as_received(event: dict[str, Any], leg: str = "client", event_id: int = 1, session_id: str = "s1") -> dict[str, Any]:
    return {"type": event["type"], "id": event_id, "session_id": session_id, "leg": leg,
            **{key: value for key, value in event.items() if key != "type"}}


def frame(event: dict[str, Any]) -> bytes:
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


# --- SSE framing and event rules ------------------------------------------------------------


def test_lines_split_on_lf_and_crlf_across_chunks() -> None:
    splitter = LineSplitter()
    assert list(splitter.feed(b"id: 1\r\nevent: sum")) == ["id: 1"]
    assert list(splitter.feed(b"mary\n\n")) == ["event: summary", ""]
    assert list(splitter.feed("data: é\n".encode())) == ["data: é"]


def test_a_line_longer_than_the_bound_breaks_the_stream_after_the_lines_before_it() -> None:
    lines: list[str] = []
    with pytest.raises(StreamBroken):
        lines.extend(LineSplitter(max_line_bytes=16).feed(b"ok\n" + b"x" * 18))  # never terminated
    assert lines == ["ok"]
    with pytest.raises(StreamBroken):
        list(LineSplitter(max_line_bytes=16).feed(b"x" * 40 + b"\nok\n"))  # terminated in the same chunk
    assert list(LineSplitter(max_line_bytes=16).feed(b"x" * 16 + b"\r\n")) == ["x" * 16]


def test_sse_fields_comments_and_last_id() -> None:
    parser = SseParser()
    lines = [": keep-alive", "", "id: 7", "event: summary", "data: {\"a\":", "data:1}", "retry: 5", "x-other: 1", ""]
    messages = [message for line in lines if (message := parser.feed_line(line))]
    assert messages == [SseMessage("summary", '{"a":\n1}')]
    assert parser.last_id == "7"
    parser.feed_line("data: no id here")
    parser.feed_line("")
    assert parser.last_id == "7"  # kept until a message names another
    parser.feed_line("id: 9")
    parser.start_stream()  # a message cut by a reconnection is forgotten, its id too
    assert parser.last_id == "7"


def test_an_event_larger_than_the_bound_breaks_the_stream() -> None:
    parser = SseParser(max_event_bytes=100)
    parser.feed_line("data: " + "x" * 60)
    with pytest.raises(StreamBroken):
        parser.feed_line("data: " + "x" * 60)


def test_events_outside_the_contract_are_skipped() -> None:
    good = as_received(summary())
    assert parse_event(SseMessage("summary", json.dumps(good)), "s1") == good
    bad = [
        "not json", "[1, 2]", "[" * 100_000, json.dumps({**good, "type": "pwned"}),
        json.dumps({**good, "leg": "admin"}), json.dumps({**good, "session_id": "other"}),
        json.dumps({key: value for key, value in good.items() if key != "at"}), json.dumps({**good, "window": 3}),
        json.dumps({**as_received(warning()), "message": None}),
        json.dumps(as_received(warning())).replace("8.0", "NaN"), json.dumps(as_received(warning())).replace("8.0", "1e999"),
        json.dumps({key: value for key, value in as_received(warning()).items() if key != "cue"}),
    ]
    for data in bad:
        assert parse_event(SseMessage("", data), "s1") is None, data
    assert parse_event(SseMessage("warning_raised", json.dumps(good)), "s1") is None  # SSE name disagrees


def test_strings_from_the_network_lose_control_characters() -> None:
    hostile = as_received(warning(message="\x1b[2J\x1b]0;pwned\x07voice\u009b breaks"))
    event = parse_event(SseMessage("warning_raised", json.dumps(hostile)), "s1")
    assert event is not None and event["message"] == "[2J]0;pwnedvoice breaks"


def test_backoff_doubles_from_half_a_second_to_ten() -> None:
    delays, delay = [], None
    for _ in range(7):
        delay = next_backoff_s(delay)
        delays.append(delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


# --- the folded state -----------------------------------------------------------------------


def test_state_keeps_the_latest_summary_history_and_active_warnings() -> None:
    clock = [100.0]
    state = WatchState(clock=lambda: clock[0])
    for index in range(70):
        state.apply(as_received(summary(rtt_ms=float(index), level="poor" if index % 2 else "good"), "client"))
    state.apply(as_received(summary(rtt_ms=20.0), "therapist"))
    assert state.summaries["client"]["window"]["figures"]["rtt_p95_ms"] == 69.0
    history = state.history["client"]
    assert len(history) == 60 and history[0].rtt_p95_ms == 10.0 and history[-1].level == "poor"
    assert history[-1].cue_levels["vocal_tone"] == "poor" and history[-1].loss_pct == 2.5
    state.apply(as_received(warning("warning_raised"), "client"))
    state.apply(as_received(warning("warning_raised", "Your voice is breaking up."), "therapist"))
    assert set(state.active) == {("client", "vocal_tone"), ("therapist", "vocal_tone")}
    state.apply(as_received(warning("warning_cleared", "The client's voice is clear again."), "client"))
    assert set(state.active) == {("therapist", "vocal_tone")}
    assert [event["type"] for event in state.warnings] == ["warning_raised", "warning_raised", "warning_cleared"]
    clock[0] = 112.0
    assert state.last_event_age_s() == 12.0 and state.summary_age_s("therapist") == 12.0
    assert state.summary_age_s("nobody") is None


# --- notifications --------------------------------------------------------------------------


def test_without_a_notification_service_the_bell_rings_and_one_line_says_why(monkeypatch) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/netcheck-test-bus")
    stream = StringIO()
    notifier = Notifier(stream=stream)
    started = time.monotonic()
    raised = asyncio.run(notifier.notify(as_received(warning())))
    cleared = asyncio.run(notifier.notify(as_received(warning("warning_cleared", "The client's voice is clear again."))))
    assert time.monotonic() - started < 2.5
    assert (raised, cleared) == ("terminal", "terminal")
    assert stream.getvalue() == (
        "\anetcheck watch: warning: The client's voice is breaking up. — Check in verbally on how things land.\n"
        "netcheck watch: cleared: The client's voice is clear again.\n")
    assert asyncio.run(notifier.notify(as_received(summary()))) == "skipped"


def test_a_hanging_notification_service_costs_at_most_the_timeout(monkeypatch) -> None:
    class Hanging:
        async def send(self, **_kwargs: Any) -> str:
            await asyncio.sleep(30)
            return "never"

    monkeypatch.setattr(Notifier, "_make_desktop", lambda self: Hanging())
    stream = StringIO()
    started = time.monotonic()
    assert asyncio.run(Notifier(timeout_s=0.3, stream=stream).notify(as_received(warning()))) == "terminal"
    assert time.monotonic() - started < 1.0
    assert stream.getvalue().startswith("\anetcheck watch: warning:")


def test_old_warnings_replayed_by_the_hub_do_not_notify() -> None:
    assert should_notify(as_received(warning(at=now_iso(-60))))
    assert not should_notify(as_received(warning(at=now_iso(-3600))))
    assert should_notify(as_received(warning(at="not a time")))
    assert not should_notify(as_received(summary()))


# --- the follower against servers that misbehave --------------------------------------------


def run_follower(handler: Any, until_events: int, read_timeout_s: float = 45.0) -> tuple[list[dict], list[ConnectionStatus]]:
    """follow_events against a loopback aiohttp server, until `until_events` events (or 15 s).

    The handler gets the request and an event that is set when the test is over (hold streams open on it).
    """
    events: list[dict[str, Any]] = []
    statuses: list[ConnectionStatus] = []

    async def main() -> None:
        over = asyncio.Event()
        app = web.Application()

        async def route(request: web.Request) -> web.StreamResponse:
            return await handler(request, over)

        app.router.add_get("/v1/sessions/s1/events", route)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        stop = asyncio.Event()

        def on_event(event: dict[str, Any]) -> None:
            events.append(event)
            if len(events) >= until_events:
                stop.set()

        try:
            await asyncio.wait_for(follow_events(f"http://127.0.0.1:{port}", "s1", "v1.a.b", on_event, stop,
                                                 statuses.append, read_timeout_s=read_timeout_s), 15)
        except asyncio.TimeoutError:
            raise AssertionError(f"got {events}, statuses {statuses}") from None
        finally:
            over.set()
            await runner.cleanup()

    asyncio.run(main())
    return events, statuses


def test_an_overlong_line_reconnects_with_the_last_event_id() -> None:
    seen_ids: list[str | None] = []

    async def handler(request: web.Request, over: asyncio.Event) -> web.StreamResponse:
        seen_ids.append(request.headers.get("Last-Event-ID"))
        assert request.headers["Authorization"] == "Bearer v1.a.b"
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if len(seen_ids) == 1:
            await response.write(b": keep-alive\n\n" + frame(as_received(summary(), event_id=5)))
            await response.write(b"data: " + b"x" * (65 * 1024))
        else:
            await response.write(frame(as_received(warning(), event_id=6)))
        await over.wait()
        return response

    events, statuses = run_follower(handler, until_events=2)
    assert [event["id"] for event in events] == [5, 6]
    assert seen_ids == ["0", "5"]
    reconnecting = [status for status in statuses if status.retry_in_s is not None]
    assert reconnecting[0].retry_in_s == 0.5 and "64 KiB" in reconnecting[0].detail


def test_a_silent_stream_times_out_and_reconnects() -> None:
    calls = []

    async def handler(request: web.Request, over: asyncio.Event) -> web.StreamResponse:
        calls.append(request.headers.get("Last-Event-ID"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if len(calls) > 1:
            await response.write(frame(as_received(summary(), event_id=1)))
        await over.wait()
        return response

    events, statuses = run_follower(handler, until_events=1, read_timeout_s=0.5)
    assert len(events) == 1 and len(calls) == 2
    assert any("no data for 0.5 s" in status.detail for status in statuses)


@pytest.mark.parametrize(("status", "message"), [
    (401, "token refused: expired or not for this session (hub: expired)"),
    (403, "a client token cannot watch; ask for a therapist token"),
    (404, "no session hub at"),
])
def test_refusals_are_not_retried(status: int, message: str) -> None:
    calls = []

    async def handler(_request: web.Request, _over: asyncio.Event) -> web.Response:
        calls.append(1)
        return web.json_response({"error": "token refused: expired"}, status=status)

    with pytest.raises(Exception) as raised:
        run_follower(handler, until_events=1)
    assert message in str(raised.value) and len(calls) == 1
    assert raised.value.exit_code == (2 if status != 404 else 1)  # type: ignore[attr-defined]


def test_a_refused_token_is_named_by_the_hubs_reason_code_not_its_sentence() -> None:
    """The hub's `reason` (docs/http-api.md) names why; the sentence may be reworded (issue 24)."""
    async def handler(_request: web.Request, _over: asyncio.Event) -> web.Response:
        return web.json_response({"error": "missing token: send Authorization: Bearer <token>", "reason": "missing"},
                                 status=401)

    with pytest.raises(Exception) as raised:
        run_follower(handler, until_events=1)
    assert str(raised.value) == "token refused: expired or not for this session (hub: missing)"


# --- the command against the real hub ------------------------------------------------------


@pytest.fixture(scope="module")
def hub() -> Any:
    running = start_serve(env=subprocess_env(NETCHECK_SECRET=SECRET))
    yield running
    stop(running.process)


def token(session_id: str, role: str, ttl_s: float = 600, now_s: float | None = None) -> str:
    return create_token(SECRET.encode(), session_id, role, ttl_s, now_s)


def post(server_url: str, session_id: str, role: str, events: list[dict[str, Any]]) -> None:
    """POST events as an agent of `role` does."""

    async def send() -> None:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server_url}/v1/sessions/{session_id}/events", json={"events": events},
                                 headers={"Authorization": f"Bearer {token(session_id, role)}"}) as response:
                assert response.status == 202, await response.text()

    asyncio.run(send())


class Watch:
    """`netcheck watch --json` as a subprocess, its lines read by threads."""

    def __init__(self, server_url: str, session_id: str, watch_token: str, home: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "cli.py"), "watch", "--server", server_url, "--session", session_id, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env=subprocess_env(NETCHECK_HOME=str(home), NETCHECK_TOKEN=watch_token,
                               DBUS_SESSION_BUS_ADDRESS="unix:path=/nonexistent/netcheck-test-bus"))  # no pop-ups
        self.stdout: queue.Queue[str | None] = queue.Queue()
        self.stderr: queue.Queue[str | None] = queue.Queue()
        for stream, lines in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr)):
            threading.Thread(target=self._read, args=(stream, lines), daemon=True).start()

    @staticmethod
    def _read(stream: Any, lines: queue.Queue[str | None]) -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def events(self, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        return [json.loads(self.line(self.stdout, timeout_s)) for _ in range(count)]

    def wait_stderr(self, text: str, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.line(self.stderr, deadline - time.monotonic()):
            pass

    @staticmethod
    def line(lines: queue.Queue[str | None], timeout_s: float) -> str:
        line = lines.get(timeout=max(0.01, timeout_s))
        assert line is not None, "netcheck watch ended"
        return line

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


def test_watch_prints_both_legs_as_json_lines_and_stores_them(hub: ServerProcess, tmp_path: Path) -> None:
    session_id = f"s-{uuid.uuid4().hex[:12]}"
    post(hub.http_url, session_id, "client", [summary(rtt_ms=48.0)])  # before watch starts: replayed to it
    post(hub.http_url, session_id, "therapist", [summary(rtt_ms=30.0, loss_pct=0.0, level="good")])
    watch = Watch(hub.http_url, session_id, token(session_id, "therapist"), tmp_path)
    try:
        first = watch.events(2)
        post(hub.http_url, session_id, "client", [warning()])  # live
        (raised,) = watch.events(1)
    finally:
        assert watch.terminate() == 0
    assert [(event["type"], event["leg"]) for event in first] == [("summary", "client"), ("summary", "therapist")]
    assert first[0]["window"]["figures"]["rtt_p95_ms"] == 48.0
    assert {"type", "id", "session_id", "leg", "at", "window"} <= set(first[0])
    assert raised["leg"] == "client" and raised["type"] == "warning_raised"
    # the hub writes the words from cue, metric and value; the agent's own `message` is not passed on (issue 23)
    assert (raised["message"], raised["advice"]) == warning_text(True, Cue.VOCAL_TONE, "client", "loss_one_way_pct", 8.0)
    assert raised["cue"] == "vocal_tone"
    with LocalStore(tmp_path / "netcheck.sqlite3") as store:
        stored = store.session_events(session_id)
    assert sorted((event["leg"], event["type"]) for event in stored) == [
        ("client", "summary"), ("client", "warning_raised"), ("therapist", "summary")]


@pytest.mark.parametrize(("role", "session_of_token", "ttl_s", "now_offset_s", "message"), [
    ("client", None, 600, 0, "a client token cannot watch; ask for a therapist token"),
    ("therapist", "another-session", 600, 0, "token refused: expired or not for this session"),
    ("therapist", None, 60, -3600, "token refused: expired or not for this session (hub: expired)"),
])
def test_a_refused_token_exits_2_with_one_line(hub: ServerProcess, run_cli, role: str, session_of_token: str | None,
                                               ttl_s: float, now_offset_s: float, message: str) -> None:
    refused = token(session_of_token or "s-refused", role, ttl_s, time.time() + now_offset_s)
    result = run_cli("watch", "--server", hub.http_url, "--session", "s-refused", "--json", timeout=20,
                     extra_env={"NETCHECK_TOKEN": refused})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"netcheck: {message}"), result.stderr
    assert result.stdout == ""


def test_a_missing_or_malformed_token_is_a_usage_error(run_cli) -> None:
    result = run_cli("watch", "--server", "http://127.0.0.1:9", "--session", "s1")
    assert result.returncode == 2 and "no token" in result.stderr
    result = run_cli("watch", "--server", "http://127.0.0.1:9", "--session", "s1", extra_env={"NETCHECK_TOKEN": "a b"})
    assert result.returncode == 2 and "token is malformed" in result.stderr


def test_watch_reconnects_after_the_server_restarts(tmp_path: Path) -> None:
    port = free_port()
    env = subprocess_env(NETCHECK_SECRET=SECRET)
    server = start_serve("--http-port", str(port), env=env)
    session_id = f"s-{uuid.uuid4().hex[:12]}"
    watch = Watch(server.http_url, session_id, token(session_id, "therapist"), tmp_path)
    try:
        post(server.http_url, session_id, "client", [summary(rtt_ms=40.0)])
        assert watch.events(1)[0]["window"]["figures"]["rtt_p95_ms"] == 40.0
        stop(server.process)
        watch.wait_stderr("reconnecting")
        server = start_serve("--http-port", str(port), env=env)
        watch.wait_stderr("connected again")
        post(server.http_url, session_id, "therapist", [summary(rtt_ms=41.0)])
        post(server.http_url, session_id, "client", [warning()])
        later = watch.events(2)
        assert [(event["leg"], event["type"]) for event in later] == [("therapist", "summary"),
                                                                     ("client", "warning_raised")]
    finally:
        assert watch.terminate() == 0
        stop(server.process)


def test_the_call_leads_its_leg_with_the_probe_beside_it_and_its_warnings_are_its_own() -> None:
    """Issue 25: a summary the server marked `"source": "call"` leads the leg while the call posts; the
    probe's latest stays beside it; a call's warning and the probe's on one cue clear on their own."""
    clock = [100.0]
    state = WatchState(clock=lambda: clock[0])
    state.apply(as_received(summary(level="good"), "client"))
    state.apply(as_received({**summary(level="poor", loss_pct=8.0), "source": "call"}, "client", 2))
    state.apply(as_received(summary(rtt_ms=20.0, level="good"), "client", 3))
    assert state.summaries["client"]["source"] == "call" and state.probe_summaries["client"]["window"]["level"] == "good"
    assert [point.level for point in state.history["client"]] == ["good", "poor"]  # the probe's beside, not in it
    state.apply(as_received({**warning(), "source": "call"}, "client", 4))
    state.apply(as_received(warning(), "client", 5))
    assert set(state.active) == {("client", "vocal_tone", "call"), ("client", "vocal_tone")}
    state.apply(as_received(warning("warning_cleared", "The client's voice is clear again."), "client", 6))
    assert set(state.active) == {("client", "vocal_tone", "call")}
    clock[0] = 131.0  # the call silent for longer than CALL_LEADS_S: the probe leads again
    state.apply(as_received(summary(level="fair"), "client", 7))
    assert "source" not in state.summaries["client"] and not state.call_leads("client")
