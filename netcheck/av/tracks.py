"""Synthetic audio and video tracks that carry sync markers, paced on one shared clock."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
from aiortc import MediaStreamTrack

from netcheck.av import markers
from netcheck.av.markers import AUDIO_FRAME_SAMPLES, AUDIO_RATE_HZ, VideoFormat

VIDEO_CLOCK_HZ = 90000
MAX_MARKERS = 600


class MediaClock:
    """The capture clock both tracks share: it starts when the first frame of either is asked for."""

    def __init__(self) -> None:
        self.start_s: float | None = None

    def elapsed_until(self, due_s: float) -> float:
        """Seconds to wait until `due_s` after start (starting the clock if needed)."""
        now = time.monotonic()
        if self.start_s is None:
            self.start_s = now
        return self.start_s + due_s - now


class MarkedVideoTrack(MediaStreamTrack):
    """Video whose every frame carries its index; marker frames are every MARKER_PERIOD_S."""

    kind = "video"

    def __init__(self, clock: MediaClock, video: VideoFormat) -> None:
        super().__init__()
        self.clock = clock
        self.video = video
        self.index = 0
        self._background = markers.background_luma(video.width, video.height)
        self._chroma = bytes((128,)) * ((video.width // 2) * (video.height // 2))

    async def recv(self) -> av.VideoFrame:
        index = self.index
        self.index += 1
        wait_s = self.clock.elapsed_until(index / self.video.fps)
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        width, height = self.video.width, self.video.height
        scroll = (index % 64) * width
        luma = bytearray(self._background[scroll:scroll + width * height])
        markers.paint_code(luma, width, width, index)
        frame = av.VideoFrame(width, height, "yuv420p")
        frame.planes[0].update(bytes(luma))
        frame.planes[1].update(self._chroma)
        frame.planes[2].update(self._chroma)
        frame.pts = index * VIDEO_CLOCK_HZ // self.video.fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_HZ)
        return frame


class MarkedAudioTrack(MediaStreamTrack):
    """20 ms mono frames of silence with a tone burst at each marker instant minus the audio offset."""

    kind = "audio"

    def __init__(self, clock: MediaClock, video: VideoFormat, audio_offset_ms: float) -> None:
        super().__init__()
        self.clock = clock
        self.frame_index = 0
        self.burst_starts = markers.burst_start_samples(video, audio_offset_ms, MAX_MARKERS)

    async def recv(self) -> av.AudioFrame:
        first_sample = self.frame_index * AUDIO_FRAME_SAMPLES
        self.frame_index += 1
        wait_s = self.clock.elapsed_until(first_sample / AUDIO_RATE_HZ)
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        samples = markers.audio_samples(first_sample, AUDIO_FRAME_SAMPLES, self.burst_starts)
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_FRAME_SAMPLES)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = AUDIO_RATE_HZ
        frame.pts = first_sample
        frame.time_base = fractions.Fraction(1, AUDIO_RATE_HZ)
        return frame
