"""The A/V probe against a real media peer on loopback: accuracy, bad input, and no leaks."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import psutil
import pytest

from netcheck.av.markers import VideoFormat
from netcheck.av.peer import restrict_host_candidates
from netcheck.model import Status
from netcheck.probes.av import AvProbe, AvProbeSettings, AvResult
from netcheck.server.app import start_server
from tests.harness.servers import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def loopback_ice() -> None:
    restrict_host_candidates(["127.0.0.1"])


async def probe_in_process(settings: AvProbeSettings) -> AvResult:
    server = await start_server("127.0.0.1", 0, 0)
    try:
        return await AvProbe(server.url, settings).run()
    finally:
        await server.close()


def test_loopback_both_directions_at_640x360_30() -> None:
    result = asyncio.run(probe_in_process(AvProbeSettings(duration_s=4.0)))
    assert result.status == Status.OK, result.error
    assert result.ice_path == "host"
    assert result.time_to_first_frame_ms is not None and result.time_to_first_frame_ms < 2000
    for direction in (result.upstream, result.downstream):
        assert direction is not None
        assert direction.video_fps is not None and direction.video_fps >= 24
        assert (direction.video_width, direction.video_height) == (640, 360)
        assert direction.video_freezes == 0 and direction.video_frozen_ms == 0
        assert direction.video_loss_pct == 0 and direction.audio_loss_pct == 0
        assert direction.av_skew_ms is not None and abs(direction.av_skew_ms) <= 20
        assert direction.video_bitrate_kbps and direction.video_bitrate_kbps > 100
        assert direction.audio_bitrate_kbps and direction.audio_bitrate_kbps > 5
        assert direction.rtt_ms is not None and direction.rtt_ms < 50
    assert abs(result.av_skew_ms) == max(abs(result.upstream.av_skew_ms), abs(result.downstream.av_skew_ms))


@pytest.mark.parametrize("offset_ms", [-150.0, -60.0, 40.0, 120.0])
def test_audio_offset_is_measured_in_both_directions(offset_ms: float) -> None:
    result = asyncio.run(probe_in_process(AvProbeSettings(duration_s=3.0, audio_offset_ms=offset_ms)))
    assert result.status == Status.OK, result.error
    assert result.upstream.av_skew_ms == pytest.approx(offset_ms, abs=20)
    assert result.downstream.av_skew_ms == pytest.approx(offset_ms, abs=20)


def post(url: str, body: bytes, timeout_s: float = 10.0) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [(b"not json", 400, "bad offer"),
     (json.dumps({"type": "offer", "sdp": "v=0\r\nm=audio garbage\r\nm=video garbage\r\n"}).encode(), 400,
      "SDP not accepted"),
     (json.dumps({"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"}).encode(), 400,
      "audio and a video"),
     (b"{" + b" " * 200_000 + b"}", 413, "")],
)
def test_bad_offers_get_a_clear_error_and_the_server_keeps_serving(server: ServerProcess, body: bytes, status: int,
                                                                     message: str, run_cli) -> None:
    code, answer = post(f"{server.http_url}/v1/av/offer", body)
    assert code == status
    assert message in answer.get("error", "")
    with urllib.request.urlopen(f"{server.http_url}/v1/info", timeout=5) as response:
        assert json.loads(response.read())["av"] is True


def test_server_still_answers_a_real_probe_after_bad_offers(server: ServerProcess, run_cli) -> None:
    post(f"{server.http_url}/v1/av/offer", b"garbage")
    result = run_cli("probe", "av", "--server", server.http_url, "--duration", "1s", "--video", "320x180@15",
                     "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "ok"


def test_server_that_never_answers_is_a_clear_error(run_cli) -> None:
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(8)
        start = time.monotonic()
        result = run_cli("probe", "av", "--server", f"http://127.0.0.1:{black_hole.getsockname()[1]}", "--json")
        elapsed = time.monotonic() - start
    assert result.returncode == 5
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout)["status"] == "timeout"
    assert len(result.stderr.strip().splitlines()) == 1 and "did not answer" in result.stderr
    assert elapsed < 10


def test_fifty_probes_leak_no_threads_sockets_or_memory() -> None:
    settings = AvProbeSettings(duration_s=0.5, video=VideoFormat(320, 180, 15))
    process = psutil.Process()

    async def many(count: int) -> list[tuple[int, int, float]]:
        server = await start_server("127.0.0.1", 0, 0)
        samples = []
        try:
            for _ in range(count):
                result = await AvProbe(server.url, settings).run()
                assert result.status == Status.OK, result.error
                await asyncio.sleep(0.05)  # let closed transports finish
                samples.append((threading.active_count(), len(os.listdir("/proc/self/fd")),
                                process.memory_info().rss / 2**20))
        finally:
            await server.close()
        return samples

    samples = asyncio.run(many(50))
    threads, fds, rss_mb = zip(*samples)
    # after a warm-up of 10 probes nothing may keep growing
    assert max(threads[10:]) <= threads[9] + 2, threads
    assert max(fds[10:]) <= fds[9] + 4, fds
    assert rss_mb[-1] - rss_mb[9] < 25, rss_mb


def test_unreachable_turn_server_is_blocked_quickly_and_says_why() -> None:
    from netcheck.av.peer import IceSettings

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # a UDP port that never answers
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        ice = IceSettings(turn_url=f"turn:127.0.0.1:{port}?transport=udp", turn_user="u", turn_password="p",
                          relay_only=True)
        start = time.monotonic()
        result = asyncio.run(probe_in_process(AvProbeSettings(duration_s=1.0, ice=ice)))
    assert result.status == Status.BLOCKED
    assert "ICE gathering took over" in result.error and "TURN over TCP failed too" in result.error
    assert time.monotonic() - start < 15


def test_the_gathering_wait_is_the_setting_not_a_constant() -> None:
    """`[check] av_gather_timeout_s` (tests of blocked paths compress it): a TURN server that never
    answers is given up after the configured wait, and the error says that wait."""
    from netcheck.av.peer import IceSettings

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        ice = IceSettings(turn_url=f"turn:127.0.0.1:{silent.getsockname()[1]}?transport=udp", turn_user="u",
                          turn_password="p", relay_only=True)
        start = time.monotonic()
        result = asyncio.run(probe_in_process(AvProbeSettings(duration_s=1.0, ice=ice, gather_timeout_s=1.0)))
    assert result.status == Status.BLOCKED
    assert "ICE gathering took over 1 s" in result.error
    assert time.monotonic() - start < 5.0  # the default's wait alone is 5 s
