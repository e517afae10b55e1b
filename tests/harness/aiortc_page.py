"""A FAKE browser for the server side of the browser check: a real aiortc peer that does what the
page does (docs/browser-check.md) — a call with the server's media peer plus the "netcheck-voice"
data channel, the voice stream, the throughput fetches with test ids — and builds the contract's
JSON for `POST /v1/checks`. The real page is tested in headless Chromium (tests/test_browser_page.py);
this stand-in proves the server's half without a browser.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from netcheck.server.voice_channel import (
    KIND_ECHO_REQUEST, KIND_STATS_REPLY, KIND_STATS_REQUEST, LABEL, VoiceMessage, decode, encode,
)

VIDEO = "640x360@30"
BUSY_BUDGET_S = 60.0
"""How long the page keeps retrying a busy server (429) before it gives up, as the CLI does."""


@dataclass
class Call:
    pc: Any
    channel: Any
    recorder: Any
    clock: Any
    session_id: str
    video: Any
    started_s: float
    replies: list[tuple[VoiceMessage, float]] = field(default_factory=list)
    """Echo replies with the page-side receive time (ms, the same clock as client_send_ms)."""
    stats_rx_count: int | None = None

    async def close(self) -> None:
        await self.recorder.stop()
        await self.pc.close()


def now_ms() -> float:
    return time.monotonic() * 1000.0


async def open_call(server_url: str, token: str | None = None, audio_offset_ms: float = 0.0,
                    video: str = VIDEO) -> Call:
    """Offer a call with marked tracks and the voice channel, as the page does; wait for the channel to open."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from netcheck.av.analysis import TrackRecorder
    from netcheck.av.peer import restrict_host_candidates
    from netcheck.av.session import parse_video_format
    from netcheck.av.tracks import MarkedAudioTrack, MarkedVideoTrack, MediaClock

    restrict_host_candidates(["127.0.0.1"])
    video_format = parse_video_format(video)
    pc = RTCPeerConnection()
    recorder, clock = TrackRecorder(), MediaClock()
    pc.on("track", recorder.follow)
    pc.addTrack(MarkedAudioTrack(clock, video_format, 0.0))
    pc.addTrack(MarkedVideoTrack(clock, video_format))
    channel = pc.createDataChannel(LABEL, ordered=False, maxRetransmits=0)
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline_s = time.monotonic() + BUSY_BUDGET_S
    async with aiohttp.ClientSession(headers=headers) as http:
        while True:  # as the page does: "busy, retrying in N s" (429 + Retry-After), within a budget
            async with http.post(server_url + "/v1/av/offer", json={
                "type": "offer", "sdp": pc.localDescription.sdp, "video": video, "audio_offset_ms": audio_offset_ms,
                "client": "browser"}) as response:
                answer = await response.json()
                retry_s = float(response.headers.get("Retry-After", "1"))
            if response.status == 429 and time.monotonic() + retry_s < deadline_s:
                await asyncio.sleep(retry_s)
                continue
            if response.status != 200:
                await pc.close()
                raise RuntimeError(f"offer refused: {response.status} {answer}")
            break
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    call = Call(pc, channel, recorder, clock, answer["session_id"], video_format, time.monotonic())
    opened = asyncio.Event()
    channel.on("open", opened.set)
    if channel.readyState != "open":
        await asyncio.wait_for(opened.wait(), 10.0)

    def on_message(data: object) -> None:
        message = decode(data) if isinstance(data, bytes) else None
        if message is None:
            return
        if message.kind == KIND_STATS_REPLY:
            call.stats_rx_count = message.server_rx_count
        else:
            call.replies.append((message, now_ms()))

    channel.on("message", on_message)
    return call


async def voice_stream(call: Call, count: int, interval_ms: float = 20.0, first_seq: int = 0) -> list[float]:
    """Send `count` echo requests every `interval_ms` on an absolute schedule; their send times (ms)."""
    sent_ms: list[float] = []
    start_s = time.monotonic()
    for index in range(count):
        await asyncio.sleep(max(0.0, start_s + index * interval_ms / 1000.0 - time.monotonic()))
        sent = now_ms()
        call.channel.send(encode(VoiceMessage(KIND_ECHO_REQUEST, first_seq + index, 0, sent)))
        sent_ms.append(sent)
    return sent_ms


async def ask_stats(call: Call) -> int | None:
    for _ in range(3):
        call.channel.send(encode(VoiceMessage(KIND_STATS_REQUEST, 0, 0, now_ms())))
        await asyncio.sleep(0.2)
        if call.stats_rx_count is not None:
            break
    return call.stats_rx_count


async def throughput(server_url: str, headers: dict[str, str], seconds: float) -> dict[str, Any]:
    """Download then upload for `seconds` each with test ids, as the page's fetch streams do; the
    page's own figures beside them (the server prefers its own counts)."""
    download_id, upload_id = secrets.token_hex(16), secrets.token_hex(16)
    async with aiohttp.ClientSession(headers=headers) as http:
        started_s, got = time.monotonic(), 0
        async with http.get(f"{server_url}/v1/throughput/download?bytes={1 << 30}&test={download_id}") as response:
            async for chunk in response.content.iter_any():
                got += len(chunk)
                if time.monotonic() - started_s > seconds:
                    break
        download_mbps = got * 8 / (time.monotonic() - started_s) / 1e6
        payload = os.urandom(64 * 1024)
        ends_s = time.monotonic() + seconds

        async def body():
            budget = 900 * 1024 * 1024  # under the server's 1 GiB a request (loopback fills it in 2 s)
            while time.monotonic() < ends_s and budget > 0:
                budget -= len(payload)
                yield payload

        started_s = time.monotonic()
        async with http.post(f"{server_url}/v1/throughput/upload/{upload_id}", data=body()) as response:
            answer = await response.json()
            if "bytes" not in answer:
                raise RuntimeError(f"upload refused: {response.status} {answer}")
            sent = answer["bytes"]
        upload_mbps = sent * 8 / (time.monotonic() - started_s) / 1e6
    return {"download_test_id": download_id, "upload_test_id": upload_id,
            "download_mbps": round(download_mbps, 2), "upload_mbps": round(upload_mbps, 2)}


async def run_page_check(server_url: str, token: str | None = None, voice_count: int = 150,
                         throughput_s: float | None = 2.0, audio_offset_ms: float = 0.0) -> dict[str, Any]:
    """The whole check as the page runs it, up to the body of `POST /v1/checks` (returned, not posted)."""
    from netcheck.av import peer
    from netcheck.av.figures import received_fields, sent_fields

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    call = await open_call(server_url, token, audio_offset_ms)
    try:
        await asyncio.sleep(0.5)  # the first frames
        sent_ms = await voice_stream(call, voice_count)
        await asyncio.sleep(0.3)
        server_rx_count = await ask_stats(call)
        idle = [recv - message.client_send_ms - (message.server_send_ms - message.server_recv_ms)
                for message, recv in call.replies]
        speed: dict[str, Any] | None = None
        if throughput_s is not None:
            loaded_start = len(call.replies)
            loader = asyncio.ensure_future(voice_stream(call, int(throughput_s * 2 * 50), first_seq=10_000))
            speed = await throughput(server_url, headers, throughput_s)
            await loader
            loaded = [recv - m.client_send_ms - (m.server_send_ms - m.server_recv_ms)
                      for m, recv in call.replies[loaded_start:]]
            speed |= {"idle_rtt_ms": round(_p95(idle), 3), "loaded_rtt_down_ms": round(_p95(loaded), 3),
                      "loaded_rtt_up_ms": round(_p95(loaded), 3)}
        window_end_s = time.monotonic()
        received = received_fields(call.recorder.recording, await peer.inbound_figures(call.pc), call.video,
                                   window_end_s)
        sent = sent_fields(await peer.outbound_figures(call.pc, call.clock.start_s))
        downstream = {**received, "duration_s": round(window_end_s - call.started_s, 3),
                      "jitter_buffer_ms": None, "concealed_pct": None,
                      "video_bitrate_kbps": sent["video_bitrate_kbps"], "audio_bitrate_kbps": sent["audio_bitrate_kbps"],
                      "rtt_ms": sent["rtt_ms"]}
        replies = [[m.seq, recv, m.server_recv_ms, m.server_send_ms] for m, recv in call.replies if m.seq < voice_count]
        return {
            "av_session_id": call.session_id,
            "audio_offset_ms": audio_offset_ms,
            "devices": {"secure_context": True, "camera": "ok", "camera_width": 640, "camera_height": 360,
                        "microphone": "ok", "microphone_level_db": -23.5, "speakers": "heard",
                        "output_device_choice": False},
            "downstream": downstream,
            "voice": {"interval_ms": 20, "sent_ms": sent_ms, "replies": replies,
                      "server_rx_count": server_rx_count if server_rx_count is not None else 0},
            "throughput": speed,
            "path": {"candidate_type": peer.selected_candidate_type(call.pc) or "host", "protocol": "udp",
                     "relay_protocol": None},
        }
    finally:
        await call.close()


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else (values[0] if values else 0.0)
