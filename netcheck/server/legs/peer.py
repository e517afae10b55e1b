"""The server's side of one client tab's peer connection (docs/in-session.md, "The client's tab").

It answers the tab's offer, echoes the voice stream on the "netcheck-voice" data channel (the
check's contract, server/voice_channel.py, at the agent's light rate), sends a small test card
down, and watches the picture coming up, window by window. Everything a hostile tab could make it
hold or do is bounded: the echo rate (a token bucket at twice the agent's rate), the arrivals it
remembers, one voice channel, the picture's size, and every received track is read as it comes
(aiortc decodes what it receives and queues the frames for whoever reads them: nobody reading
would be a leak).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from netcheck.av.peer import (
    IceSettings, offer_left_open, outbound_figures, restrict_host_candidates, rtc_configuration,
)
from netcheck.av.tracks import VIDEO_CLOCK_HZ
from netcheck.av.video_windows import VideoWindow, VideoWindows
from netcheck.browser.tab import ReceivedVideo, VoiceArrival
from netcheck.server.rate import TokenBuckets
from netcheck.server.voice_channel import KIND_ECHO_REPLY, KIND_ECHO_REQUEST, LABEL as VOICE_LABEL, VoiceMessage
from netcheck.server.voice_channel import decode, encode

SERVER_PICTURE = (320, 180, 30)
"""The server's picture: width, height, fps. A flat card with one small moving square: the encoder
spends almost nothing on the still part, so it costs the client tens of kbit/s, while every frame
still travels and a lost one still shows as a freeze (measured: BENCHMARKS.md, session tabs)."""
SQUARE_PX = 24
SQUARE_ROW = b"\xeb" * SQUARE_PX
MAX_UPSTREAM_PIXELS = 640 * 480
"""The tab sends a 320x180 card; a bigger picture is not the tab's, and decoding it costs the server."""
ARRIVALS_KEPT_S = 60.0
"""Voice arrivals older than this are forgotten, reported or not (a window reports within ~2 windows)."""
ECHO_BURST = 10.0


class LegVoiceLog:
    """The voice channel's echoes: answered at once, each arrival kept until a window report takes it."""

    def __init__(self, rate_pps: float) -> None:
        self.arrivals: OrderedDict[int, VoiceArrival] = OrderedDict()
        self.max_arrivals = int(rate_pps * ARRIVALS_KEPT_S) + 1
        self.limiter = TokenBuckets(2.0 * rate_pps + 1.0, ECHO_BURST, max_keys=1)
        self.ignored = 0

    def answer(self, data: object, now_ms: float) -> bytes | None:
        """The reply to `data`, or None to ignore it (malformed, not a request, over the rate)."""
        if not isinstance(data, bytes) or not self.limiter.allow("tab", now_ms / 1000.0):
            self.ignored += 1
            return None
        message = decode(data)
        if message is None or message.kind != KIND_ECHO_REQUEST:
            self.ignored += 1
            return None
        if message.seq not in self.arrivals:  # a duplicate keeps its first arrival
            self.arrivals[message.seq] = VoiceArrival(message.client_send_ms, now_ms, now_ms)
            while len(self.arrivals) > self.max_arrivals:
                self.arrivals.popitem(last=False)
        return encode(VoiceMessage(KIND_ECHO_REPLY, message.seq, 0, message.client_send_ms, now_ms, now_ms))

    def take(self, older_than_ms: float | None = None) -> dict[int, VoiceArrival]:
        """The arrivals kept so far (for a window report), and forget those older than `older_than_ms`."""
        kept = dict(self.arrivals)
        if older_than_ms is not None:
            for seq in [seq for seq, arrival in self.arrivals.items() if arrival.server_recv_ms < older_than_ms]:
                del self.arrivals[seq]
        return kept


class MovingSquareTrack(MediaStreamTrack):
    """The server's picture for the tab: a flat card, a small square moving across it."""

    kind = "video"

    def __init__(self, width: int, height: int, fps: int) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.index = 0
        self.start_s: float | None = None
        self.luma = bytes((96,)) * (width * height)
        self.chroma = bytes((128,)) * ((width // 2) * (height // 2))

    async def recv(self) -> av.VideoFrame:
        index = self.index
        self.index += 1
        if self.start_s is None:
            self.start_s = time.monotonic()
        wait_s = self.start_s + index / self.fps - time.monotonic()
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        width, height = self.width, self.height
        luma = bytearray(self.luma)
        x0 = (index * 4) % (width - SQUARE_PX)
        for y in range((height - SQUARE_PX) // 2, (height + SQUARE_PX) // 2):
            luma[y * width + x0:y * width + x0 + SQUARE_PX] = SQUARE_ROW
        frame = av.VideoFrame(width, height, "yuv420p")
        frame.planes[0].update(bytes(luma))
        frame.planes[1].update(self.chroma)
        frame.planes[2].update(self.chroma)
        frame.pts = index * VIDEO_CLOCK_HZ // self.fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_HZ)
        return frame


class LegPeer:
    """One tab's peer connection; `on_gone` is called once when it fails, closes or misbehaves."""

    def __init__(self, ice: IceSettings, rate_pps: float, on_gone: Callable[[str], None]) -> None:
        restrict_host_candidates()
        self.pc = RTCPeerConnection(rtc_configuration(ice))
        self.voice = LegVoiceLog(rate_pps)
        self.voice_open = False
        self.video: VideoWindows | None = None
        """Set when the tab's picture track arrives."""
        self.on_gone = on_gone
        self.sending_since_s: float | None = None
        self._tasks: list[asyncio.Task] = []
        self._rtp_counts = (0, 0)
        self._gone = False
        self.pc.on("track", self._follow)
        self.pc.on("datachannel", self._answer_voice)
        self.pc.on("connectionstatechange", self._state_changed)

    async def answer(self, sdp: str) -> str:
        """The answer to the tab's offer; raises on an SDP aiortc does not take."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_left_open(sdp), type="offer"))
        self.pc.addTrack(MovingSquareTrack(*SERVER_PICTURE))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self.sending_since_s = time.monotonic()
        return self.pc.localDescription.sdp

    def take_video(self, end_s: float) -> ReceivedVideo | None:
        """The tab's picture in the window ending at `end_s` (None: it sends none)."""
        if self.video is None:
            return None
        window: VideoWindow = self.video.take(end_s)
        received, lost = self._video_rtp_counts()
        delta_received, delta_lost = received - self._rtp_counts[0], lost - self._rtp_counts[1]
        self._rtp_counts = (received, lost)
        expected = delta_received + max(0, delta_lost)
        loss_pct = round(100.0 * max(0, delta_lost) / expected, 2) if expected > 0 else None
        return ReceivedVideo(window.fps, window.width, window.height, window.freezes, window.frozen_ms, loss_pct)

    async def server_rtt_ms(self) -> float | None:
        """The RTCP round trip of the server's picture (the tab's receiver reports)."""
        figures = await outbound_figures(self.pc, self.sending_since_s)
        video = figures.get("video")
        return round(video.rtt_ms, 2) if video is not None and video.rtt_ms is not None else None

    async def close(self) -> None:
        self._gone = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.pc.close()

    def _gone_because(self, reason: str) -> None:
        if not self._gone:
            self._gone = True
            self.on_gone(reason)

    def _state_changed(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self._gone_because(f"the peer connection {self.pc.connectionState}")

    def _follow(self, track: Any) -> None:
        if track.kind == "video" and self.video is None:
            self.video = VideoWindows(time.monotonic())
            self._tasks.append(asyncio.ensure_future(self._watch_video(track, self.video)))
        else:  # a second picture, or sound: not ours, but read, or aiortc queues it without end
            self._tasks.append(asyncio.ensure_future(drain(track)))

    async def _watch_video(self, track: Any, windows: VideoWindows) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if frame.width * frame.height > MAX_UPSTREAM_PIXELS:
                self._gone_because(f"the tab sent a {frame.width}x{frame.height} picture (at most "
                                   f"{MAX_UPSTREAM_PIXELS} pixels)")
                return
            windows.frame(time.monotonic(), frame.width, frame.height)

    def _answer_voice(self, channel: Any) -> None:
        """Echo the tab's "netcheck-voice" channel; any other channel, or a second one, is left unanswered."""
        if channel.label != VOICE_LABEL or self.voice_open:
            return
        self.voice_open = True
        log = self.voice

        def on_message(data: object) -> None:
            reply = log.answer(data, time.monotonic() * 1000.0)
            if reply is not None and channel.readyState == "open":
                channel.send(reply)

        channel.on("message", on_message)

    def _video_rtp_counts(self) -> tuple[int, int]:
        """Packets received and lost so far on the tab's picture (its media SSRC; RTX left out, as
        av/peer.inbound_figures reads them)."""
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind != "video":
                continue
            receiver = transceiver.receiver
            streams = getattr(receiver, "_RTCRtpReceiver__remote_streams", None) or {}
            rtx = set(getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", {}))
            media = [stream for ssrc, stream in streams.items() if ssrc not in rtx]
            if media:
                main = max(media, key=lambda stream: stream.packets_received)
                return main.packets_received, max(0, main.packets_lost)
        return self._rtp_counts


async def drain(track: Any) -> None:
    """Read a track to its end, keeping nothing."""
    while True:
        try:
            await track.recv()
        except MediaStreamError:
            return
