"""The client's leg of a session measured from a browser tab (issue 14; docs/in-session.md, "The client's tab").

Fast: the window arithmetic (browser/tab.py, av/video_windows.py, the voice log) with made-up times;
the endpoints in-process with a real aiortc peer standing in for the tab (its offer, a report, the
hub's events, the refusals). Slow: headless Chromium on a real `netcheck serve` with `netcheck
watch --json` reading the hub; marked `netns`: Chromium in a network namespace with 8 % of the UDP
datagrams into it dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from netcheck.av.video_windows import VideoWindows
from netcheck.browser.check_body import BodyError
from netcheck.browser.tab import SEQ_MODULUS, VoiceArrival, parse_offer, parse_report, voice_window
from netcheck.model import Status
from netcheck.server.headroom import ShortOfCpu
from netcheck.server.voice_channel import KIND_ECHO_REQUEST, VoiceMessage, encode
from netcheck.tokens import create_token
from tests.harness.axe import assert_accessible
from tests.harness.session_loop import run_in_own_thread
from tests.test_session_e2e import lines_of, next_event

SECRET = b"client-tab-test-secret-0123456789"
SESSION = "s1"
TEST_TIMEOUT_S = 40.0


# --- the window arithmetic ------------------------------------------------------------------------------

def frames(windows: VideoWindows, start_s: float, end_s: float, fps: float = 30.0) -> None:
    t = start_s
    while t < end_s - 1e-9:
        windows.frame(t, 320, 180)
        t += 1.0 / fps


def test_a_steady_picture_is_30_fps_without_freezes():
    windows = VideoWindows(0.0)
    frames(windows, 0.0, 5.0)
    window = windows.take(5.0)
    assert window.fps == pytest.approx(30.0, abs=0.3)
    assert (window.freezes, window.frozen_ms, window.height) == (0, 0.0, 180)


def test_a_stall_inside_a_window_is_one_freeze_of_its_length():
    windows = VideoWindows(0.0)
    frames(windows, 0.0, 2.0)
    frames(windows, 3.0, 5.0)  # one second without a frame
    window = windows.take(5.0)
    assert window.freezes == 1
    assert window.frozen_ms == pytest.approx(1000.0 + 1000.0 / 30, abs=5)


def test_a_stall_across_windows_is_counted_once_and_its_time_split():
    windows = VideoWindows(0.0)
    frames(windows, 0.0, 4.0)
    first = windows.take(5.0)  # frozen since 4.0 (the last frame at ≈ 3.97 s)
    second_empty = windows.take(10.0)
    frames(windows, 11.0, 15.0)
    third = windows.take(15.0)
    assert (first.freezes, second_empty.freezes, third.freezes) == (1, 0, 0)
    assert first.frozen_ms == pytest.approx(1033, abs=5)
    assert second_empty.frozen_ms == pytest.approx(5000, abs=1)
    assert second_empty.fps is None and second_empty.height is None  # nothing arrived: judged as 0 fps
    assert third.frozen_ms == pytest.approx(1000, abs=1)


def test_no_frame_yet_is_no_figure():
    window = VideoWindows(0.0).take(5.0)
    assert (window.frames, window.fps, window.freezes, window.frozen_ms) == (0, None, 0, 0.0)


def voice_report(first_seq: int, sent_ms: list[float], replies: list[tuple[int, float]]) -> dict[str, Any]:
    return {"first_seq": first_seq, "sent_ms": sent_ms, "replies": [list(reply) for reply in replies]}


def test_the_voice_window_counts_loss_per_direction_from_the_servers_own_arrivals():
    # 10 sent; the server received seqs 100..107 (2 lost up); replies came for 100..105 (2 more lost down)
    sent = [1000.0 + 100 * i for i in range(10)]
    arrivals = {100 + i: VoiceArrival(sent[i], 5000.0 + 100 * i + 10, 5000.0 + 100 * i + 10) for i in range(8)}
    replies = [(100 + i, sent[i] + 20.0) for i in range(6)]
    udp = voice_window(voice_report(100, sent, replies), arrivals)
    assert udp.status == Status.OK
    assert (udp.packets_sent, udp.packets_received) == (10, 6)
    assert udp.loss_up_pct == pytest.approx(20.0)
    assert udp.loss_down_pct == pytest.approx(25.0)
    assert udp.rtt_p50_ms == pytest.approx(20.0)


def test_the_voice_window_wraps_its_sequence_numbers():
    first = SEQ_MODULUS - 3
    sent = [float(i * 100) for i in range(6)]
    seqs = [(first + i) % SEQ_MODULUS for i in range(6)]
    arrivals = {seq: VoiceArrival(sent[i], 10.0 * i, 10.0 * i) for i, seq in enumerate(seqs)}
    udp = voice_window(voice_report(first, sent, [(seq, sent[i] + 5.0) for i, seq in enumerate(seqs)]), arrivals)
    assert (udp.packets_sent, udp.packets_received, udp.loss_pct) == (6, 6, 0.0)


def test_a_claimed_reply_the_server_never_sent_and_a_stale_arrival_do_not_count():
    sent = [0.0, 100.0, 200.0, 300.0]
    arrivals = {
        0: VoiceArrival(0.0, 50.0, 50.0),
        1: VoiceArrival(99_999.0, 150.0, 150.0),  # seq 1 of a stream 65536 seqs earlier: not this window's
        2: VoiceArrival(200.0, 250.0, 250.0),
    }
    replies = [(0, 10.0), (1, 110.0), (2, 210.0), (3, 310.0)]  # 1 and 3 were never answered by the server
    udp = voice_window(voice_report(0, sent, replies), arrivals)
    assert (udp.packets_sent, udp.packets_received) == (4, 2)
    assert udp.loss_up_pct == pytest.approx(50.0)


def test_a_window_without_sends_has_no_voice_result():
    assert voice_window(None, {}) is None
    assert voice_window(voice_report(0, [], []), {}) is None


def report_body(**fields: Any) -> bytes:
    body = {"leg_id": "0" * 32, "index": 0, "voice": None, "downstream": None, "upstream": None, "path": None}
    return json.dumps({**body, **fields}).encode()


@pytest.mark.parametrize("fields, field", [
    ({"extra": 1}, "extra"),
    ({"downstream": {"video_fps": -1}}, "downstream.video_fps"),
    ({"downstream": {"video_fps": "30"}}, "downstream.video_fps"),
    ({"upstream": {"quality_limitation": "tired"}}, "upstream.quality_limitation"),
    ({"voice": {"first_seq": 70000, "sent_ms": [], "replies": []}}, "voice.first_seq"),
    ({"voice": {"first_seq": 0, "sent_ms": [0.0] * 2001, "replies": []}}, "voice.sent_ms"),
    ({"voice": {"first_seq": 0, "sent_ms": [0.0], "replies": [[0, 1.0, 2.0]]}}, "voice.replies[0]"),
    ({"leg_id": "not hex"}, "leg_id"),
])
def test_a_report_that_is_not_the_contracts_is_refused_naming_the_field(fields, field):
    with pytest.raises(BodyError) as refused:
        parse_report(report_body(**fields))
    assert refused.value.field == field


def test_nan_and_infinity_are_refused_in_a_report():
    with pytest.raises(BodyError):
        parse_report(b'{"leg_id": "' + b"0" * 32 + b'", "index": 0, "downstream": {"video_fps": NaN}}')
    with pytest.raises(BodyError):
        parse_report(b'{"leg_id": "' + b"0" * 32 + b'", "index": 0, "downstream": {"rtt_ms": 1e999}}')


def test_an_offer_takes_the_window_and_rate_within_their_ranges():
    offer = parse_offer(json.dumps({"type": "offer", "sdp": "v=0"}).encode())
    assert (offer.window_s, offer.rate_pps) == (5.0, 10.0)
    assert parse_offer(json.dumps({"type": "offer", "sdp": "v=0", "window_s": 2, "rate_pps": 25}).encode()).window_s == 2
    for bad in ({"window_s": 1}, {"window_s": 31}, {"rate_pps": 51}, {"type": "answer"}, {"video": "720p"}):
        with pytest.raises(BodyError):
            parse_offer(json.dumps({"type": "offer", "sdp": "v=0", **bad}).encode())


def test_the_voice_log_answers_at_its_rate_and_ignores_the_rest():
    from netcheck.server.legs.peer import LegVoiceLog

    log = LegVoiceLog(rate_pps=10.0)
    request = lambda seq: encode(VoiceMessage(KIND_ECHO_REQUEST, seq, 0, float(seq)))  # noqa: E731
    answered = sum(log.answer(request(seq), 1000.0) is not None for seq in range(100))  # 100 at once
    assert answered == 10  # the burst; then 21 a second (twice the rate, and one)
    assert log.answer(b"not a message", 5000.0) is None
    assert log.answer(request(500), 5000.0) is not None
    assert log.answer(request(500), 5100.0) is not None  # a duplicate is answered, its first arrival kept
    assert log.arrivals[500].server_recv_ms == 5000.0
    assert log.ignored >= 91


# --- the endpoints in-process, an aiortc peer standing in for the tab -------------------------------------

def run(test: Callable[[], Awaitable[None]]) -> None:
    """In a thread of its own: the module's browser tests share one Chromium, whose Playwright driver
    would refuse an `asyncio.run` in the test's thread (tests/harness/session_loop.py)."""
    async def bounded() -> None:
        await asyncio.wait_for(test(), TEST_TIMEOUT_S)

    run_in_own_thread(bounded())


def token(role: str = "client", session_id: str = SESSION, ttl_s: float = 3600, now_s: float | None = None,
          secret: bytes = SECRET) -> str:
    return create_token(secret, session_id, role, ttl_s, now_s)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def legs_url(server: Any, session_id: str = SESSION, role: str = "client") -> str:
    return f"{server.url}/v1/sessions/{session_id}/legs/{role}"


class FakeTab:
    """What the page does, in aiortc: the small picture up, the voice channel, the offer, reports; on the
    path of `role` (the page takes it from its token)."""

    def __init__(self, http: aiohttp.ClientSession, server: Any, token_value: str, role: str = "client") -> None:
        self.http, self.server, self.token, self.role = http, server, token_value, role
        self.pc: Any = None
        self.channel: Any = None
        self.sent: list[float] = []
        self.replies: list[tuple[int, float]] = []
        self.leg_id = ""

    async def open(self, picture: tuple[int, int, int] | None = None, **settings: float) -> dict[str, Any]:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        from netcheck.server.legs.peer import SERVER_PICTURE, MovingSquareTrack, drain

        self.pc = RTCPeerConnection()
        self.pc.addTrack(MovingSquareTrack(*(picture or SERVER_PICTURE)))
        self.pc.on("track", lambda track: asyncio.ensure_future(drain(track)))
        self.channel = self.pc.createDataChannel("netcheck-voice", ordered=False, maxRetransmits=0)
        opened = asyncio.Event()
        self.channel.on("open", opened.set)
        self.channel.on("message", self._reply)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with self.http.post(f"{legs_url(self.server, role=self.role)}/offer", headers=bearer(self.token),
                                  json={"type": "offer", "sdp": self.pc.localDescription.sdp, **settings}) as answer:
            body = await answer.json()
            assert answer.status == 200, body
        self.leg_id = body["leg_id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="answer"))
        await asyncio.wait_for(opened.wait(), 10)
        return body

    def _reply(self, data: object) -> None:
        from netcheck.server.voice_channel import decode

        message = decode(data) if isinstance(data, bytes) else None
        if message is not None:
            self.replies.append((message.seq, time.monotonic() * 1000.0))

    async def voice(self, count: int, interval_s: float = 0.04) -> None:
        for _ in range(count):
            seq = len(self.sent)
            self.sent.append(time.monotonic() * 1000.0)
            self.channel.send(encode(VoiceMessage(KIND_ECHO_REQUEST, seq, 0, self.sent[-1])))
            await asyncio.sleep(interval_s)
        await asyncio.sleep(0.3)

    async def report(self, **fields: Any) -> tuple[int, dict[str, Any]]:
        body = {"leg_id": self.leg_id, "index": 0,
                "voice": {"first_seq": 0, "sent_ms": self.sent, "replies": [list(r) for r in self.replies]},
                "downstream": {"video_fps": 30.0, "video_freezes": 0, "video_frozen_ms": 0.0, "video_loss_pct": 0.0},
                "upstream": {"quality_limitation": "none"}, "path": None, **fields}
        async with self.http.post(f"{legs_url(self.server, role=self.role)}/window", headers=bearer(self.token),
                                  json=body) as answer:
            return answer.status, await answer.json()

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()


async def hub_events(http: aiohttp.ClientSession, server: Any, count: int) -> list[dict[str, Any]]:
    """The session's first `count` events as a therapist's watcher receives them (replayed from the start)."""
    events: list[dict[str, Any]] = []
    async with http.get(f"{server.url}/v1/sessions/{SESSION}/events",
                        headers={**bearer(token("therapist")), "Last-Event-ID": "0"}) as stream:
        assert stream.status == 200
        async for line in stream.content:
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
                if len(events) >= count:
                    return events
    return events


@asynccontextmanager
async def serving(secret: bytes | None = SECRET) -> AsyncIterator[Any]:
    """A server in this process (the hub on when there is a secret), an HTTP session, and tabs that are
    all closed on the way out: `async with serving() as bench: tab = bench.tab(); …`."""
    from netcheck.server.app import start_server

    server = await start_server(secret=secret)
    server.media.cpu.busy_pct = 101.0  # a FAKE calm CPU (shared with the legs): these tests are not about load
    http = aiohttp.ClientSession()
    bench = Bench(server, http)
    try:
        yield bench
    finally:
        for tab in bench.tabs:
            await tab.close()
        await http.close()
        await server.close()


class Bench:
    def __init__(self, server: Any, http: aiohttp.ClientSession) -> None:
        self.server, self.http = server, http
        self.tabs: list[FakeTab] = []

    def tab(self, token_value: str | None = None, role: str = "client") -> FakeTab:
        self.tabs.append(FakeTab(self.http, self.server, token_value or token(role), role))
        return self.tabs[-1]


def test_a_tabs_window_becomes_the_client_legs_summary_in_the_hub():
    async def body() -> None:
        async with serving() as bench:
            tab = bench.tab()
            answer = await tab.open(window_s=2, rate_pps=25)
            assert (answer["window_s"], answer["rate_pps"]) == (2, 25)
            await tab.voice(20)
            await asyncio.sleep(0.5)
            status, window = await tab.report()
            assert status == 200, window
            assert window["connection"] == "ok" and window["index"] == 0
            [summary] = await hub_events(bench.http, bench.server, 1)
        assert (summary["type"], summary["leg"], summary["session_id"]) == ("summary", "client", SESSION)
        figures = summary["window"]["figures"]
        assert figures["loss_up_pct"] == 0.0 and figures["loss_down_pct"] == 0.0
        assert figures["video_fps"] is not None and figures["video_fps"] > 15  # the server saw the picture
        assert summary["window"]["cues"]["vocal_tone"]["level"] == "good"
        assert summary["window"]["window_s"] == 2

    run(body)


def test_a_second_tab_of_the_session_takes_over_and_the_first_is_told():
    async def body() -> None:
        async with serving() as bench:
            first, second = bench.tab(), bench.tab()
            await first.open(window_s=2)
            await second.open(window_s=2)
            status, answer = await first.report()
            assert status == 409, answer
            assert (await second.report())[0] == 200

    run(body)


async def summaries_of(http: aiohttp.ClientSession, server: Any, legs: set[str],
                       timeout_s: float = 5.0) -> dict[str, dict[str, Any]]:
    """The first summary of each of `legs` (or what came within `timeout_s`), as a therapist's watcher
    receives them (replayed from the start)."""
    found: dict[str, dict[str, Any]] = {}

    async def read() -> None:
        async with http.get(f"{server.url}/v1/sessions/{SESSION}/events",
                            headers={**bearer(token("therapist")), "Last-Event-ID": "0"}) as stream:
            assert stream.status == 200
            async for line in stream.content:
                if line.startswith(b"data: "):
                    event = json.loads(line[6:])
                    if event["type"] == "summary":
                        found.setdefault(event["leg"], event)
                    if set(found) >= legs:
                        return

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(read(), timeout_s)
    return found


def test_a_therapist_token_measures_the_therapists_own_leg_into_the_hub():
    """"Also check my connection": the same tab with the therapist's token is the therapist's leg."""
    async def body() -> None:
        async with serving() as bench:
            tab = bench.tab(role="therapist")
            answer = await tab.open(window_s=2, rate_pps=25)
            assert answer["role"] == "therapist"  # the page takes the server's word for whose leg it measures
            await tab.voice(20)
            status, window = await tab.report()
            assert status == 200, window
            found = await summaries_of(bench.http, bench.server, {"therapist"})
            assert _session_tabs(bench.server).legs.keys() == {(SESSION, "therapist")}
        assert set(found) == {"therapist"}, found  # the therapist's leg, and no client's
        summary = found["therapist"]
        assert (summary["leg"], summary["session_id"]) == ("therapist", SESSION)
        assert summary["window"]["cues"]["vocal_tone"]["level"] == "good"

    run(body)


def test_a_client_and_a_therapist_tab_of_one_session_measure_side_by_side():
    """Legs are keyed by (session, role): the other role's tab takes nothing over; a second tab of the
    same role does, as for the client."""
    async def body() -> None:
        async with serving() as bench:
            client, therapist = bench.tab(), bench.tab(role="therapist")
            assert (await client.open(window_s=2))["role"] == "client"
            assert (await therapist.open(window_s=2))["role"] == "therapist"
            await asyncio.gather(client.voice(10), therapist.voice(10))
            assert [(await tab.report())[0] for tab in (client, therapist)] == [200, 200]
            assert _open_legs(bench.server) == 2
            found = await summaries_of(bench.http, bench.server, {"client", "therapist"})
            second_therapist = bench.tab(role="therapist")
            await second_therapist.open(window_s=2)
            replaced = await therapist.report()
            assert replaced[0] == 409 and "therapist's connection" in replaced[1]["error"], replaced
            assert [(await tab.report())[0] for tab in (client, second_therapist)] == [200, 200]
            assert _open_legs(bench.server) == 2
        assert set(found) == {"client", "therapist"}, found

    run(body)


@pytest.mark.parametrize("role, path", [("client", "therapist"), ("therapist", "client"), ("check", "client"),
                                        ("check", "therapist")])
def test_a_token_whose_role_is_not_the_paths_is_refused_403_and_opens_no_leg(role, path):
    """The leg is the token's role; the path must agree, and a check token measures no leg."""
    async def body() -> None:
        async with serving() as bench:
            headers = bearer(token(role))
            answers = []
            for call in ("offer", "window"):
                async with bench.http.post(f"{legs_url(bench.server, role=path)}/{call}", headers=headers,
                                           json={"type": "offer", "sdp": "v=0"}) as answer:
                    answers.append(refusal(answer.status, await answer.json()))
            async with bench.http.delete(f"{legs_url(bench.server, role=path)}/{'0' * 32}", headers=headers) as answer:
                answers.append(refusal(answer.status, await answer.json()))
            assert _open_legs(bench.server) == 0
        sentence = f"only the session's {path} token measures the {path}'s connection"
        assert answers == [(403, sentence, "role")] * 3

    run(body)


def test_the_tab_leaving_closes_its_leg():
    async def body() -> None:
        async with serving() as bench:
            tab = bench.tab()
            await tab.open()
            async with bench.http.delete(f"{legs_url(bench.server)}/{tab.leg_id}", headers=bearer(token())) as gone:
                assert gone.status == 204
            assert (await tab.report())[0] == 404

    run(body)


def test_reports_faster_than_the_window_are_refused():
    async def body() -> None:
        async with serving() as bench:
            tab = bench.tab()
            await tab.open(window_s=10)
            statuses = [(await tab.report())[0] for _ in range(5)]
        assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]

    run(body)


def test_a_tab_that_stops_reporting_loses_its_leg(monkeypatch):
    from netcheck.server.legs import routes as session_legs

    monkeypatch.setattr(session_legs, "SILENT_MIN_S", 1.0)
    monkeypatch.setattr(session_legs, "SILENT_WINDOWS", 1)

    async def body() -> None:
        async with serving() as bench:
            tab = bench.tab()
            await tab.open(window_s=2)  # silent after 1 window and the late replies' second: 3 s
            deadline_s = time.monotonic() + 4.5  # and the watcher's second
            while _open_legs(bench.server) and time.monotonic() < deadline_s:
                await asyncio.sleep(0.1)
            assert (await tab.report())[0] == 404
            assert _open_legs(bench.server) == 0

    run(body)


def test_a_picture_bigger_than_the_tabs_closes_its_leg():
    async def body() -> None:
        async with serving() as bench:
            tab = bench.tab()
            await tab.open(window_s=2, picture=(960, 540, 10))
            deadline_s = time.monotonic() + 2.0  # closed within 2 s (the test slept 2 s before issue 24)
            while _open_legs(bench.server) and time.monotonic() < deadline_s:
                await asyncio.sleep(0.05)
            assert (await tab.report())[0] == 404
            assert _open_legs(bench.server) == 0

    run(body)


def test_the_server_measures_at_most_its_bound_of_tabs_and_says_when_it_is_busy():
    async def body() -> None:
        async with serving() as bench:
            legs = _session_tabs(bench.server)
            legs.max_legs = 1
            await bench.tab().open()
            async with bench.http.post(f"{legs_url(bench.server, 's2')}/offer", headers=bearer(token(session_id="s2")),
                                       json={"type": "offer", "sdp": "v=0"}) as answer:
                assert answer.status == 429 and int(answer.headers["Retry-After"]) > 0
            cpu = bench.server.media.cpu
            cpu.limits = ShortOfCpu(loop_cpu_pct=0.0)  # FAKE limits: every sample counts as short of CPU
            cpu.sample()
            async with bench.http.post(f"{legs_url(bench.server)}/offer", headers=bearer(token()),
                                       json={"type": "offer", "sdp": "v=0"}) as answer:
                assert answer.status == 429 and "CPU" in (await answer.json())["error"]

    run(body)


def test_40_offers_at_once_open_exactly_the_bound_of_20_tabs():
    """Issue 23: the bound was checked before the peer connection was built and counted after it, so
    offers arriving together all passed it. 40 sessions' tabs offer at once → 20 legs, 20 told to wait."""
    from aiortc import RTCPeerConnection

    from netcheck.server.legs.peer import SERVER_PICTURE, MovingSquareTrack

    async def body() -> None:
        async with serving() as bench:
            tab = RTCPeerConnection()  # one real offer, posted for 40 sessions: the server answers each on its own
            tab.addTrack(MovingSquareTrack(*SERVER_PICTURE))
            tab.createDataChannel("netcheck-voice", ordered=False, maxRetransmits=0)
            await tab.setLocalDescription(await tab.createOffer())

            async def offer(number: int) -> int:
                session_id = f"race{number}"
                async with bench.http.post(f"{legs_url(bench.server, session_id)}/offer",
                                           headers=bearer(token(session_id=session_id)),
                                           json={"type": "offer", "sdp": tab.localDescription.sdp}) as answer:
                    return answer.status

            try:
                statuses = await asyncio.gather(*(offer(number) for number in range(40)))
            finally:
                await tab.close()
            assert sorted(statuses) == [200] * 20 + [429] * 20
            assert _open_legs(bench.server) == 20 and not _session_tabs(bench.server).opening

    run(body)


def test_offers_of_one_session_are_limited():
    async def body() -> None:
        async with serving() as bench:
            statuses = []
            for _ in range(7):
                async with bench.http.post(f"{legs_url(bench.server)}/offer", headers=bearer(token()),
                                           json={"type": "offer", "sdp": "not an SDP"}) as answer:
                    statuses.append(answer.status)
        assert statuses[:5] == [400] * 5 and statuses[5:] == [429, 429]

    run(body)


def refusal(status: int, body: dict[str, Any]) -> tuple[int, str, str | None]:
    return status, body["error"], body.get("reason")


@pytest.mark.parametrize("headers, expected", [
    ({}, (401, "missing token: send Authorization: Bearer <token>", "missing")),
    ({"Authorization": "Basic abc"}, (401, "token refused: malformed", "malformed")),
    (bearer(token(secret=b"another secret of the same length!!")), (401, "token refused: bad signature", "bad signature")),
    (bearer(token(ttl_s=60, now_s=time.time() - 3600)), (401, "token refused: expired", "expired")),
    (bearer(token(session_id="s2")), (401, "token refused: other session", "other session")),
    (bearer(token("therapist")), (403, "only the session's client token measures the client's connection", "role")),
    (bearer(token("check")), (403, "only the session's client token measures the client's connection", "role")),
])
def test_a_wrong_token_is_refused_in_the_hubs_words_and_opens_no_leg(headers, expected):
    async def body() -> None:
        async with serving() as bench:
            http, server = bench.http, bench.server
            for path in ("offer", "window"):
                async with http.post(f"{legs_url(server)}/{path}", headers=headers,
                                     json={"type": "offer", "sdp": "v=0"}) as answer:
                    assert refusal(answer.status, await answer.json()) == expected
            async with http.delete(f"{legs_url(server)}/{'0' * 32}", headers=headers) as answer:
                assert answer.status == expected[0]
            async with http.post(f"{server.url}/v1/sessions/{SESSION}/events", headers=headers,
                                 json={"events": []}) as answer:
                hub_wording = await answer.json()
            if expected[0] == 401:
                assert hub_wording["error"] == expected[1]  # the hub says it in the same words
            assert _open_legs(server) == 0

    run(body)


def _open_legs(server: Any) -> int:
    return len(_session_tabs(server).legs)


def _session_tabs(server: Any) -> Any:
    """The app's SessionTabs (its endpoints' owner; the node's metrics count its legs)."""
    from netcheck.server.app import SESSION_TABS

    return server.runner.app[SESSION_TABS]


def test_without_a_secret_the_tab_is_told_the_hub_is_off():
    async def body() -> None:
        async with serving(secret=None) as bench:
            async with bench.http.post(f"{legs_url(bench.server)}/offer", headers=bearer(token()),
                                       json={"type": "offer", "sdp": "v=0"}) as answer:
                assert answer.status == 404
                assert "session hub disabled" in (await answer.json())["error"]

    run(body)


def test_the_page_is_served_with_the_check_pages_policy_and_no_token_reaches_the_server():
    async def body() -> None:
        async with serving() as bench:
            url = bench.server.url
            async with bench.http.get(f"{url}/session/{SESSION}/client") as page:
                assert page.status == 200
                assert "default-src 'self'" in page.headers["Content-Security-Policy"]
                assert 'src="/web/session-client.js"' in await page.text()
            async with bench.http.get(f"{url}/session/bad%20id/client") as page:
                assert page.status == 404
            for name in ("session-client.js", "session-client.css", "session-ticker.js"):
                async with bench.http.get(f"{url}/web/{name}") as file:
                    assert file.status == 200, name

    run(body)


def test_a_malformed_offer_is_a_400_naming_the_field_and_opens_no_leg():
    async def body() -> None:
        async with serving() as bench:
            for offer, field in (({"type": "offer", "sdp": "v=0", "window_s": 0.5}, "window_s"),
                                 ({"type": "offer", "sdp": "not an SDP"}, None)):
                async with bench.http.post(f"{legs_url(bench.server)}/offer", headers=bearer(token()),
                                           json=offer) as answer:
                    refused = await answer.json()
                    assert answer.status == 400, refused
                    assert refused.get("field") == field
            assert _open_legs(bench.server) == 0

    run(body)


# --- headless Chromium on a real `netcheck serve`, `netcheck watch --json` reading the hub -------------------

SERVE_SECRET = secrets.token_urlsafe(24)
MEASURING = "body[data-state='measuring']"
SHORT_WINDOWS = "?window=2&rate=25"
"""2 s windows at 25 packets/s, as tests/test_session_e2e.py runs the agent: loss warnings weigh packets
(netcheck/session/loss_evidence.py), and at the defaults (5 s, 10 packets/s) 8 % loss is raised within 15 s in
only about 70 % of switches (p95 23.6 s, docs/session-hub.md "Detection time"): a 20 s bound would fail
now and then. At 2 s and 25 packets/s it is raised within 15 s every time (p95 9.3 s)."""
SHORT_WINDOW_S = 2.0
"""The window of SHORT_WINDOWS. Since issue 24 the tab's browser tests all run on it (a 5 s window is
waited out in 2 s), with the seconds of slack their bounds had at 5 s: what each bound allows beyond
the window itself is unchanged (the server's default window, 5 s at 10 packets/s, is test_an_offer_…'s)."""


def serve_token(role: str, session_id: str = SESSION, ttl_s: float = 3600, now_s: float | None = None) -> str:
    return create_token(SERVE_SECRET.encode(), session_id, role, ttl_s, now_s)


def watch_json(server_url: str, home: Path, session_id: str = SESSION) -> subprocess.Popen:
    """`netcheck watch --session s1 --json` with a therapist token, as a therapist runs it."""
    from tests.harness.servers import REPO, subprocess_env

    home.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, str(REPO / "cli.py"), "watch", "--server", server_url, "--session",
                             session_id, "--json", "--no-notify"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=subprocess_env(NETCHECK_HOME=str(home),
                                                          NETCHECK_TOKEN=serve_token("therapist", session_id)))


def screenshot(page: Any, tmp_path: Path, name: str) -> None:
    """Into $NETCHECK_SCREENSHOTS when set (docs/screenshots, for docs/in-session.md), else the test's tmp_path."""
    folder = Path(os.environ.get("NETCHECK_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def client_summary(event: dict) -> bool:
    return event.get("type") == "summary" and event.get("leg") == "client"


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    from tests.harness.servers import start_serve, stop, subprocess_env

    running = start_serve(env=subprocess_env(NETCHECK_SECRET=SERVE_SECRET, NETCHECK_HOME=str(tmp_path / "server")))
    try:
        yield running
    finally:
        stop(running.process)


class LegRequests:
    """The page's requests to the leg endpoints and the server's answers, as they pass."""

    def __init__(self, page: Any) -> None:
        self.seen: list[tuple[str, str, int]] = []
        page.on("response", self._seen)

    def _seen(self, response: Any) -> None:
        if "/legs/client/" in response.url:
            self.seen.append((response.request.method, response.url.rsplit("/", 1)[1], response.status))


@pytest.mark.slow
@pytest.mark.usefixtures("one_chromium_per_module")
def test_the_tab_measures_the_client_leg_and_watch_receives_every_window(serve, tmp_path):
    from tests.harness.browser import chromium

    watch = watch_json(serve.http_url, tmp_path / "therapist")
    events = lines_of(watch)
    try:
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 360, "height": 740})
            requests = LegRequests(page)
            opened_s = time.monotonic()
            page.goto(f"{serve.http_url}/session/{SESSION}/client{SHORT_WINDOWS}#token={serve_token('client')}")
            page.wait_for_selector(MEASURING, state="attached", timeout=30_000)
            measuring_s = time.monotonic() - opened_s
            page.evaluate(BADGE_WORDS_OBSERVER)
            assert "token" not in page.url  # taken from the fragment, then removed from the address bar
            first, first_s = next_event(events, time.monotonic() + 15, client_summary)
            summaries = [first]
            for _ in range(2):
                summaries.append(next_event(events, time.monotonic() + 10, client_summary)[0])
            spacing_s = (time.monotonic() - first_s) / 2
            badge = page.get_attribute("#badge", "data-connection")
            badge_words = page.evaluate("window.netcheckBadgeWords")
            fits = page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
            screenshot(page, tmp_path, "tab-ok-360")
            assert_accessible(page, "tab, connection OK")
    finally:
        watch.terminate()
        watch.wait(timeout=10)
    print(f"measuring {measuring_s:.1f} s after opening; a summary every {spacing_s:.1f} s; "
          f"first {json.dumps(first['window'])}")
    assert measuring_s <= 10.0 + SHORT_WINDOW_S  # the setup ≤ 10 s, and the first window (at 5 s: ≤ 15 s)
    assert SHORT_WINDOW_S - 1.0 <= spacing_s <= SHORT_WINDOW_S + 1.5  # every window (at 5 s: 4.0–6.5 s)
    assert [s["window"]["index"] for s in summaries] == sorted(s["window"]["index"] for s in summaries)
    for summary in summaries:
        assert (summary["session_id"], summary["window"]["window_s"]) == (SESSION, SHORT_WINDOW_S)
        figures = summary["window"]["figures"]
        assert figures["loss_up_pct"] is not None and figures["loss_down_pct"] is not None
        assert figures["video_fps"] is not None and figures["rtt_p95_ms"] is not None
        assert summary["window"]["cues"]["vocal_tone"]["level"] != "unknown"
    assert badge == "ok" and fits
    assert ("POST", "offer", 200) in requests.seen and ("POST", "window", 200) in requests.seen
    # the badge is a live region: each window that keeps the connection OK leaves its words alone, so a
    # screen reader says them once (issue 26), not again every window
    assert all(a != b for a, b in zip(badge_words, badge_words[1:])), badge_words  # (its words were set before)


BADGE_WORDS_OBSERVER = """() => {
  window.netcheckBadgeWords = [];
  const badge = document.getElementById("badge");
  new MutationObserver(() => window.netcheckBadgeWords.push(badge.textContent))
    .observe(badge, { childList: true, characterData: true, subtree: true });
}"""


RELOAD_RESUMES_S = 10.0
"""Issue 23: a reloaded tab measures its leg again within this (an offer, the connection, one 5 s window)."""


@pytest.mark.slow
@pytest.mark.usefixtures("one_chromium_per_module")
def test_a_reloaded_tab_resumes_measuring_its_leg_within_10_s(serve, tmp_path):
    """The token leaves the address bar once read; the tab keeps it (sessionStorage, this tab only), so a
    reload takes its leg over and measures on: a new leg's first window reaches the hub within 10 s. In 2 s
    windows since issue 24, so within 7 s: the same 5 s for the offer and the connection."""
    from tests.harness.browser import chromium

    watch = watch_json(serve.http_url, tmp_path / "therapist")
    events = lines_of(watch)
    try:
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 360, "height": 740})
            page.goto(f"{serve.http_url}/session/{SESSION}/client{SHORT_WINDOWS}#token={serve_token('client')}")
            page.wait_for_selector(MEASURING, state="attached", timeout=30_000)
            next_event(events, time.monotonic() + 15, client_summary)  # the first leg's window 0
            assert "token" not in page.url
            kept = page.evaluate("Object.keys(localStorage).length")
            reloaded_s = time.monotonic()
            page.reload()
            _, resumed_s = next_event(events, reloaded_s + RELOAD_RESUMES_S - 5.0 + SHORT_WINDOW_S,
                                      lambda event: client_summary(event) and event["window"]["index"] == 0)
            page.wait_for_selector(MEASURING, state="attached", timeout=5_000)
            state = page.get_attribute("body", "data-state")
    finally:
        watch.terminate()
        watch.wait(timeout=10)
    print(f"the reloaded tab's first window reached the hub {resumed_s - reloaded_s:.1f} s after the reload")
    assert state == "measuring" and kept == 0  # nothing in localStorage: the token does not outlive the tab


@pytest.fixture(scope="module")
def wrong_token_pages(one_chromium_per_module: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The four wrong tokens' tabs opened side by side in one Chromium on one server, each on a session of
    its own with its own `watch`, then watched 3 s more after the last was refused: each page's leg
    requests, sentence and problem, and the client's events its session's watcher received. A page that
    opened a leg shows in its own case only (before issue 24: a server, a Chromium, a watcher and the 3 s
    each, one after the other)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from tests.harness.browser import chromium
    from tests.harness.servers import start_serve, stop, subprocess_env

    folder = tmp_path_factory.mktemp("wrong-tokens")
    sessions = {which: f"wrong-{index}" for index, which in enumerate(("expired", "other_session", "bad_signature",
                                                                     "check"))}
    wrong = {
        "expired": serve_token("client", sessions["expired"], ttl_s=60, now_s=time.time() - 3600),
        "other_session": serve_token("client", session_id="s2"),
        "bad_signature": create_token(b"not the server's secret, same length", sessions["bad_signature"], "client", 3600),
        "check": serve_token("check", sessions["check"]),
    }
    running = start_serve(env=subprocess_env(NETCHECK_SECRET=SERVE_SECRET, NETCHECK_HOME=str(folder / "server")))
    watches = {which: watch_json(running.http_url, folder / f"therapist-{which}", sessions[which]) for which in wrong}
    events = {which: lines_of(watch) for which, watch in watches.items()}
    cases: dict[str, dict] = {}
    try:
        with chromium() as browser:
            pages = {}
            for which, token_value in wrong.items():
                page = browser.new_page()
                pages[which] = (page, LegRequests(page))
                page.goto(f"{running.http_url}/session/{sessions[which]}/client#token={token_value}")
            refused_by_s = time.monotonic() + 20
            for which, (page, _) in pages.items():
                with contextlib.suppress(PlaywrightTimeout):  # a page not refused fails its own case, below
                    page.wait_for_selector("body[data-state='refused']", state="attached",
                                           timeout=max(1.0, refused_by_s - time.monotonic()) * 1000)
                if which == "expired":
                    screenshot(page, folder, "tab-expired-1280")
                    assert_accessible(page, "tab, refused: token expired")
                cases[which] = {"state": page.get_attribute("body", "data-state"), "sentence": page.inner_text("#problem"),
                                "shown": page.get_attribute("#problem", "data-problem")}
            time.sleep(3)  # a leg would have posted its first window by now… had one been opened
            for which, (_, requests) in pages.items():
                cases[which]["requests"] = list(requests.seen)
    finally:
        for watch in watches.values():
            watch.terminate()
        for watch in watches.values():
            watch.wait(timeout=10)
        stop(running.process)
    return {which: {**case, "events": page_events(events[which])} for which, case in cases.items()}


@pytest.mark.slow
@pytest.mark.parametrize("which, problem, status", [
    ("expired", "refused.expired", 401),
    ("other_session", "refused.invalid", 401),
    ("bad_signature", "refused.invalid", 401),
    ("check", "refused.role", 403),  # a therapist's token measures the therapist's own leg now
])
def test_a_wrong_token_is_one_sentence_on_the_page_and_opens_no_leg(wrong_token_pages, which, problem, status):
    case = wrong_token_pages[which]
    assert case["state"] == "refused", case
    assert case["requests"] == [("POST", "offer", status)]
    assert case["shown"] == problem
    sentence = case["sentence"]
    assert sentence.count(".") == 1 and sentence.endswith("."), sentence
    assert case["events"] == []


def page_events(events: queue.Queue) -> list[dict]:
    found = []
    while not events.empty():
        found.append(json.loads(events.get()))
    return [event for event in found if event.get("leg") == "client"]


@contextlib.contextmanager
def xvfb() -> Iterator[str]:
    """A virtual X display (Debian package xvfb) for a Chromium with windows and tabs; yields DISPLAY."""
    import shutil

    if shutil.which("Xvfb") is None:
        raise RuntimeError("the background-tab test needs Xvfb (Debian package xvfb): Chromium's throttling of "
                           "hidden tabs needs a real window with two tabs")
    server = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        yield f":{server.stdout.readline().strip()}"
    finally:
        server.terminate()
        server.wait(timeout=10)


async def evaluate_in_tab(debug_port: int, url_part: str, expression: str) -> Any:
    """Runtime.evaluate in the tab whose URL contains `url_part`, over the DevTools protocol."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{debug_port}/json/list") as answer:
            tab = next(target for target in await answer.json() if url_part in target["url"])
        async with http.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0) as devtools:
            await devtools.send_json({"id": 1, "method": "Runtime.evaluate",
                                      "params": {"expression": expression, "awaitPromise": True, "returnByValue": True}})
            return (await devtools.receive_json())["result"]["result"]["value"]


HIDDEN_PAGE_TIMERS = ("new Promise((done) => { const t0 = performance.now(); let n = 0;"
                      " const tick = () => (++n < 5 ? setTimeout(tick, 100) : done({visibility: document.visibilityState,"
                      " five_100_ms_timers_ms: performance.now() - t0})); setTimeout(tick, 100); })")


@pytest.mark.slow
def test_a_tab_in_the_background_keeps_sending_at_its_rates(serve, tmp_path):
    """The client's tab sits behind the call during a session. Chromium runs a hidden tab's own timers at
    most once a second, so the page keeps time in a worker (session-ticker.js). Chromium is launched
    directly, with a window (Xvfb) and two tabs: Playwright's launch turns background throttling off and
    emulates focus, which would hide the very thing tested. In 2 s windows at 25 packets/s since issue 24:
    50 packets a window, as 10 packets/s in 5 s, and a throttled tab's one timer a second still falls short."""
    import urllib.request

    from tests.harness.browser import CHROMIUM
    from tests.harness.ports import free_port
    from tests.harness.servers import subprocess_env

    debug_port = free_port()
    watch = watch_json(serve.http_url, tmp_path / "therapist")
    events = lines_of(watch)
    with xvfb() as display:
        browser = subprocess.Popen(
            [CHROMIUM, "--no-sandbox", "--no-first-run", "--no-default-browser-check", f"--user-data-dir={tmp_path / 'profile'}",
             f"--remote-debugging-port={debug_port}",
             f"{serve.http_url}/session/{SESSION}/client{SHORT_WINDOWS}#token={serve_token('client')}"],
            env={**subprocess_env(), "DISPLAY": display}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            next_event(events, time.monotonic() + 30, client_summary)
            opened = urllib.request.Request(f"http://127.0.0.1:{debug_port}/json/new?about:blank", method="PUT")
            urllib.request.urlopen(opened, timeout=10).read()  # a second tab, in front: the session's is hidden
            hidden_s = time.monotonic()
            while not events.empty():  # windows of the visible tab: not counted
                events.get()
            with ThreadPoolExecutor(max_workers=1) as beside:
                # the hidden tab's own timers are timed while its windows come (one after the other before issue 24)
                probed = beside.submit(asyncio.run, evaluate_in_tab(debug_port, "/session/", HIDDEN_PAGE_TIMERS))
                summaries = []
                while len(summaries) < 4:
                    summary, _ = next_event(events, time.monotonic() + 10, client_summary)
                    summaries.append(summary)
                hidden_for_s = time.monotonic() - hidden_s
                hidden = probed.result(timeout=30)
        finally:
            browser.terminate()
            browser.wait(timeout=20)
            watch.terminate()
            watch.wait(timeout=10)
    windows = stored_windows(tmp_path / "server")[-4:]
    sent = [window["measurements"]["udp"]["packets_sent"] for window in windows]
    fps = [window["measurements"]["av"]["upstream"]["video_fps"] for window in windows]
    print(f"hidden: {hidden}; then {len(summaries)} windows in {hidden_for_s:.1f} s, "
          f"voice packets sent {sent}, the tab's picture at {fps} fps")
    assert hidden["visibility"] == "hidden" and hidden["five_100_ms_timers_ms"] > 2000  # throttled indeed
    assert hidden_for_s < 4 * SHORT_WINDOW_S + 3.0  # a window every 2 s, counted from the hiding itself
    assert all(45 <= count <= 55 for count in sent)  # 25 packets/s for 2 s
    assert all(value is not None and value >= 25 for value in fps)


def stored_windows(home: Path) -> list[dict]:
    """The windows `netcheck serve` stored for the client's leg (its store under NETCHECK_HOME)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(home / "netcheck.sqlite3")) as db:
        rows = db.execute("SELECT report_json FROM windows WHERE role = 'client' ORDER BY started_at").fetchall()
    return [json.loads(row[0]) for row in rows]


LOSS_RULES = ("table inet netcheck_tab_loss {\n chain prerouting {\n  type filter hook prerouting priority 0;\n"
              "  meta l4proto udp numgen random mod 100 lt 8 drop\n }\n}\n")
"""8 % of the UDP datagrams arriving in the tab's namespace dropped at random (tests/test_browser_page.py)."""


PANEL_WARNING = "[data-warning-cue='vocal_tone'][data-leg='client']"


@contextlib.contextmanager
def node_for_a_namespaced_tab(namespace: Any, tmp_path: Path) -> Iterator[tuple[Any, queue.Queue]]:
    """`netcheck serve` on the namespace's root side and `netcheck watch --json` on it: (the server, the
    watch's events as they come)."""
    from tests.harness.servers import start_serve, stop, subprocess_env

    env = subprocess_env(NETCHECK_SECRET=SERVE_SECRET, NETCHECK_HOME=str(tmp_path / "server"),
                         NETCHECK_ICE_HOST_ADDRESSES=namespace.root_address)
    running = start_serve("--bind", namespace.root_address, env=env)
    watch = watch_json(running.http_url, tmp_path / "therapist")
    try:
        yield running, lines_of(watch)
    finally:
        watch.terminate()
        watch.wait(timeout=10)
        stop(running.process)


def lose_8_pct_until_the_panel_warns(namespace: Any, events: queue.Queue, panel: Any) -> tuple[dict, float, float]:
    """Drop 8 % of the UDP into the tab's namespace; wait (20 s at most) for the client's vocal-tone warning
    in `netcheck watch` and then on the panel: (the raised event, when the loss began, when watch had it)."""
    namespace.run(["nft", "-f", "-"], input=LOSS_RULES, text=True, check=True)
    lossy_s = time.monotonic()
    raised, raised_s = next_event(events, lossy_s + 20, lambda e: e["type"] == "warning_raised"
                                  and (e["leg"], e["cue"]) == ("client", "vocal_tone"))
    panel.wait_for_selector(PANEL_WARNING, timeout=max(1, 20 - (time.monotonic() - lossy_s)) * 1000)
    return raised, lossy_s, raised_s


@pytest.mark.netns
def test_8_percent_loss_into_the_tab_raises_the_vocal_tone_warning_and_it_clears(tmp_path):
    """Issue 14, Must show 1: the client's tab in a lossy namespace, the therapist's panel in a second
    browser (notifications allowed), and `netcheck watch --json`: the same warning on all three."""
    from tests.harness.browser import CHROMIUM, chromium, chromium_args, insecure_origin_args, namespaced_chromium
    from tests.harness.netns import ClientNamespace
    from tests.test_session_panel import NOTIFICATION_SPY

    with ClientNamespace() as namespace, node_for_a_namespaced_tab(namespace, tmp_path) as (running, events):
        # plain http on a LAN address: the tab asks for no camera or microphone, so it needs no secure context
        with chromium(executable=namespaced_chromium(namespace, tmp_path)) as browser:
            # the tab first: it sets up its leg while the panel's browser starts (issue 24: 2 s less)
            page = browser.new_page(viewport={"width": 360, "height": 740})
            page.goto(f"{running.http_url}/session/{SESSION}/client{SHORT_WINDOWS}#token={serve_token('client')}")
            # the panel: the therapist's own browser, outside the lossy namespace; notifications need a
            # secure context, so Chromium is told to treat the server's http:// origin as one (tests only)
            panel_browser = browser.browser_type.launch(
                executable_path=CHROMIUM, headless=True,
                args=chromium_args(extra=insecure_origin_args(running.http_url)))
            panel_context = panel_browser.new_context(viewport={"width": 400, "height": 900})
            panel_context.grant_permissions(["notifications"], origin=running.http_url)
            panel_context.add_init_script(NOTIFICATION_SPY)
            panel = panel_context.new_page()
            panel.goto(f"{running.http_url}/session/{SESSION}#token={serve_token('therapist')}")
            panel.wait_for_selector("body[data-live='yes']", timeout=30_000)
            panel.click("#notify")
            panel.wait_for_selector("#notify[aria-pressed='true']")
            assert panel.evaluate("window.netcheckNotificationSpy.requested") == 1

            page.wait_for_selector(MEASURING, state="attached", timeout=30_000)
            next_event(events, time.monotonic() + 10, client_summary)
            raised, lossy_s, raised_s = lose_8_pct_until_the_panel_warns(namespace, events, panel)
            panel_raised_s = time.monotonic()
            shown = panel.evaluate("window.netcheckNotificationSpy.shown")
            # the test card's video loses its packets too: a facial-expression warning may come with it
            assert "client/vocal_tone" in [note["tag"] for note in shown], shown
            assert panel.get_attribute(PANEL_WARNING, "data-level") == "poor"
            page.wait_for_selector("#badge[data-connection='weak']", timeout=10_000)
            screenshot(page, tmp_path, "tab-weak-360")
            assert_accessible(page, "tab, connection weak")
            namespace.run(["nft", "delete", "table", "inet", "netcheck_tab_loss"], check=True)
            clean_s = time.monotonic()
            cleared, cleared_s = next_event(events, clean_s + 30, lambda e: e["type"] == "warning_cleared"
                                            and (e["leg"], e["cue"]) == ("client", "vocal_tone"))
            panel.wait_for_selector(PANEL_WARNING, state="detached",
                                    timeout=max(1, 30 - (time.monotonic() - clean_s)) * 1000)
            panel_cleared_s = time.monotonic()
            assert "client/vocal_tone" in panel.evaluate("window.netcheckNotificationSpy.closed")
            page.wait_for_selector("#badge[data-connection='ok']", timeout=15_000)
            panel_browser.close()
    print(f"raised {raised_s - lossy_s:.1f} s after 8 % loss began ({raised['message']}), on the panel "
          f"{panel_raised_s - lossy_s:.1f} s; cleared {cleared_s - clean_s:.1f} s after it ended, on the panel "
          f"{panel_cleared_s - clean_s:.1f} s")
    assert "client's voice is breaking up" in raised["message"] and raised["advice"]
    assert raised["metric"] == "loss_one_way_pct" and raised["level"] == "poor"
    assert cleared["message"] == "The client's voice is clear again."
