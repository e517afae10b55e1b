"""The call's own statistics as a session leg (issue 25): `POST /v1/sessions/{id}/legs/{role}/call`
against a loopback `netcheck serve` in this process, with real tokens. The server judges each window
with the tab legs' model and hysteresis, writes every sentence, and marks what it publishes
`"source": "call"`; windows whose counters contradict each other are dropped with a counted reason."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from netcheck.server.app import SESSION_CALLS, RunningServer, start_server
from netcheck.server.checks import CheckSettings
from netcheck.server.rate import TokenBuckets
from netcheck.session.watch import SseMessage, parse_event
from netcheck.tokens import create_token

SECRET = b"a secret of the call leg tests, long enough"
SESSION = "c" * 32
T0_MS = 1_765_120_000_000.0


def snapshot(t_ms: float, second: float, lost_audio: int = 0) -> dict[str, Any]:
    """Chromium's getStats of a 1:1 call, trimmed to what web/callstats.js posts (tests/test_call_window.py)."""
    stats = [
        {"type": "inbound-rtp", "id": "IT01V1843211231", "timestamp": t_ms, "kind": "video",
         "packetsReceived": int(95 * second), "packetsLost": 0, "jitter": 0.004, "framesDecoded": int(30 * second),
         "frameHeight": 720, "freezeCount": 0, "totalFreezesDuration": 0},
        {"type": "inbound-rtp", "id": "IT01A2471109532", "timestamp": t_ms, "kind": "audio",
         "packetsReceived": int(50 * second) - lost_audio, "packetsLost": lost_audio, "jitter": 0.002,
         "totalSamplesReceived": int(48000 * second), "concealedSamples": lost_audio * 960,
         "silentConcealedSamples": 0},
        {"type": "outbound-rtp", "id": "OT01V2284839104", "timestamp": t_ms, "kind": "video",
         "packetsSent": int(160 * second), "framesSent": int(30 * second), "frameHeight": 720,
         "qualityLimitationReason": "none"},
        {"type": "remote-inbound-rtp", "id": "RI01V2284839104", "timestamp": t_ms, "kind": "video",
         "localId": "OT01V2284839104", "fractionLost": 0, "roundTripTime": 0.041},
    ]
    return {"v": 1, "seq": int(second), "peers": [{"pc": "pc1", "stats": stats}]}


@asynccontextmanager
async def node(tmp_path: Path) -> AsyncIterator[tuple[RunningServer, aiohttp.ClientSession]]:
    server = await start_server("127.0.0.1", 0, 0, secret=SECRET, checks=CheckSettings(tmp_path / "node.db"))
    try:
        async with aiohttp.ClientSession() as http:
            yield server, http
    finally:
        await server.close()


async def post(http: aiohttp.ClientSession, server: RunningServer, body: Any, role: str = "client",
               token_role: str | None = None, session: str = SESSION,
               token: str | None = None) -> tuple[int, dict[str, Any]]:
    token = token if token is not None else create_token(SECRET, SESSION, token_role or role, 3600)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(f"{server.url}/v1/sessions/{session}/legs/{role}/call", data=data,
                         headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, await response.json()


def published(server: RunningServer) -> list[dict[str, Any]]:
    history = server.hub.backend.sessions[SESSION].history  # type: ignore[union-attr]  # MemoryBackend
    return [json.loads(frame.decode().split("data: ", 1)[1].split("\n", 1)[0]) for _, frame in history]


def calls(server: RunningServer) -> Any:
    return server.runner.app[SESSION_CALLS]


def test_a_lossy_call_raises_the_clients_vocal_tone_warning_marked_as_measured_on_the_call(tmp_path: Path) -> None:
    async def run() -> None:
        async with node(tmp_path) as (server, http):
            calls(server).post_limiter = TokenBuckets(100.0, 100.0, 10)  # 5 s windows, posted back to back
            assert await post(http, server, snapshot(T0_MS, 60)) == (202, {"dropped": "first_snapshot",
                                                                           "source": "call"})
            answers = []
            for n in range(1, 4):  # 20 of 250 audio packets lost in each 5 s window: 8 %
                status, answer = await post(http, server, snapshot(T0_MS + 5000 * n, 60 + 5 * n, lost_audio=20 * n))
                assert status == 200, answer
                answers.append(answer)
            assert answers[0]["level"] == "poor" and answers[0]["source"] == "call"
            assert answers[-1]["warnings"] == ["vocal_tone"]
            events = published(server)
            assert {event["source"] for event in events} == {"call"}
            summaries = [event for event in events if event["type"] == "summary"]
            assert [s["window"]["index"] for s in summaries] == [0, 1, 2]
            assert summaries[0]["leg"] == "client" and summaries[0]["window"]["cues"]["vocal_tone"]["level"] == "poor"
            [raised] = [event for event in events if event["type"] == "warning_raised"]
            assert raised["cue"] == "vocal_tone" and raised["leg"] == "client"
            assert raised["message"].startswith("The client's voice is breaking up"), raised
            assert calls(server).counters.judged == 3
            store = server.checks.store  # type: ignore[union-attr]
            for _ in range(50):  # the points are written by the store's own thread
                points = [stored.point for stored in store.pending_points(1000)]
                if any(point.measurement == "netcheck_warning" for point in points):
                    break
                await asyncio.sleep(0.05)
            by_measurement = {point.measurement: point for point in points}
            assert {"netcheck_call", "netcheck_assessment", "netcheck_warning"} <= by_measurement.keys()
            assert all(point.tags["source"] == "call" for point in points), points
            assert by_measurement["netcheck_call"].fields["down_audio_loss_pct"] == 8.0
            assert {event["source"] for event in store.session_events(SESSION)} == {"call"}
            for event in events:  # `watch --json` prints each event as the hub sent it: the source stays
                message = SseMessage(event["type"], json.dumps(event))
                assert parse_event(message, SESSION)["source"] == "call"  # type: ignore[index]

    asyncio.run(run())


def test_inconsistent_counters_are_dropped_with_a_counted_reason_and_never_published(tmp_path: Path) -> None:
    async def run() -> None:
        async with node(tmp_path) as (server, http):
            calls(server).post_limiter = TokenBuckets(100.0, 100.0, 10)
            await post(http, server, snapshot(T0_MS, 60))
            went_back = snapshot(T0_MS + 5000, 30)
            assert await post(http, server, went_back) == (202, {"dropped": "counter_went_back", "source": "call"})
            frames = snapshot(T0_MS + 10_000, 40)
            frames["peers"][0]["stats"][0]["framesDecoded"] = 10**6
            assert (await post(http, server, frames))[1]["dropped"] == "more_frames_than_packets"
            assert calls(server).counters.dropped["counter_went_back"] == 1
            assert calls(server).counters.dropped["more_frames_than_packets"] == 1
            assert calls(server).counters.judged == 0
            assert SESSION not in server.hub.backend.sessions  # type: ignore[union-attr]  # nothing published

    asyncio.run(run())


def test_the_leg_is_the_tokens_role_and_the_token_must_be_valid(tmp_path: Path) -> None:
    async def run() -> None:
        async with node(tmp_path) as (server, http):
            body = snapshot(T0_MS, 60)
            status, answer = await post(http, server, body, role="client", token_role="therapist")
            assert (status, answer["reason"]) == (403, "role")
            status, answer = await post(http, server, body, role="client", token_role="check")
            assert (status, answer["reason"]) == (403, "role")
            expired = create_token(SECRET, SESSION, "client", 60, now_s=0)
            assert (await post(http, server, body, token=expired))[0] == 401
            other = create_token(SECRET, "d" * 32, "client", 3600)
            assert (await post(http, server, body, token=other))[0] == 401
            assert (await post(http, server, body, token="nonsense"))[0] == 401
            assert calls(server).legs == {}

    asyncio.run(run())


def test_bodies_and_rates_are_bounded(tmp_path: Path) -> None:
    async def run() -> None:
        async with node(tmp_path) as (server, http):
            body = snapshot(T0_MS, 60)
            body["peers"][0]["stats"][0]["note"] = "hello therapist"
            status, answer = await post(http, server, body)
            assert (status, answer["reason"]) == (400, "bad_body") and "note" in answer["error"]
            status, _ = await post(http, server, b"{" + b" " * (64 * 1024) + b"}")
            assert status in (400, 413)
            statuses = [(await post(http, server, snapshot(T0_MS + 1000 * n, 60 + n)))[0] for n in range(3)]
            assert statuses[-1] == 429, statuses  # 2 refused bodies, then 3 at once: the burst is spent
            assert calls(server).counters.refused >= 3

    asyncio.run(run())


def test_cors_answers_only_the_clinics_call_origins(tmp_path: Path) -> None:
    clinic, stranger = "https://video.example-clinic.org", "https://evil.example"

    async def run() -> None:
        server = await start_server("127.0.0.1", 0, 0, secret=SECRET, call_origins=(clinic,))
        try:
            async with aiohttp.ClientSession() as http:
                url = f"{server.url}/v1/sessions/{SESSION}/legs/client/call"
                preflight = {"Access-Control-Request-Method": "POST",
                             "Access-Control-Request-Headers": "authorization, content-type"}
                async with http.options(url, headers={"Origin": clinic, **preflight}) as response:
                    assert response.status == 204
                    assert response.headers["Access-Control-Allow-Origin"] == clinic
                    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
                async with http.options(url, headers={"Origin": stranger, **preflight}) as response:
                    assert "Access-Control-Allow-Origin" not in response.headers
                async with http.post(url, data=b"{}", headers={"Origin": clinic}) as response:  # a refusal too
                    assert response.status == 401 and response.headers["Access-Control-Allow-Origin"] == clinic
                for origin, expected in ((clinic, clinic), (stranger, None)):
                    async with http.get(f"{server.url}/web/callstats.js", headers={"Origin": origin}) as response:
                        assert response.status == 200 and "export function watchCall" in await response.text()
                        assert response.headers.get("Access-Control-Allow-Origin") == expected
                        assert response.headers["Vary"] == "Origin"
                async with http.get(f"{server.url}/check", headers={"Origin": clinic}) as response:
                    assert "Access-Control-Allow-Origin" not in response.headers  # the call's paths only
        finally:
            await server.close()

    asyncio.run(run())


def test_a_call_origin_must_be_an_exact_origin() -> None:
    import pytest

    from netcheck.errors import UsageError
    from netcheck.parse import parse_call_origins

    assert parse_call_origins(["https://Video.Example-Clinic.org", "http://localhost:8443"]) == (
        "https://video.example-clinic.org", "http://localhost:8443")
    for bad in ("*", "https://*.clinic.org", "http://video.clinic.org", "https://clinic.org/call", "https://a.org/"):
        with pytest.raises(UsageError, match="is not an origin"):
            parse_call_origins([bad])


def test_a_window_whose_audio_packets_prove_the_loss_raises_at_once_and_slight_loss_never_does(tmp_path: Path) -> None:
    """The call's audio counts feed the tabs' packet-by-packet loss evidence (session/loss_evidence.py):
    20 of 250 packets lost in one 5 s window is evidence enough, so the warning comes with that window
    and not a window later (the real call's test raises within 15 s of the loss starting only so); 1 %
    (2–3 of 250 in every window) is not poor, and six windows of it raise nothing."""
    async def run() -> None:
        async with node(tmp_path) as (server, http):
            calls(server).post_limiter = TokenBuckets(100.0, 100.0, 10)
            await post(http, server, snapshot(T0_MS, 60))
            status, answer = await post(http, server, snapshot(T0_MS + 5000, 65, lost_audio=20))
            assert status == 200 and answer["warnings"] == ["vocal_tone"], answer
        async with node(tmp_path / "slight") as (server, http):
            calls(server).post_limiter = TokenBuckets(100.0, 100.0, 10)
            await post(http, server, snapshot(T0_MS, 60))
            for n in range(1, 7):
                status, answer = await post(http, server, snapshot(T0_MS + 5000 * n, 60 + 5 * n, lost_audio=(5 * n) // 2))
                assert status == 200 and answer["warnings"] == [], (n, answer)

    asyncio.run(run())
