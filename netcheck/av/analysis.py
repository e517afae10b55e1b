"""What arrived: per-frame arrival times and indices, audio burst onsets, and their summaries.

`TrackRecorder` consumes a received track and only records; the summaries are pure functions,
tested with made-up arrival times.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from array import array
from dataclasses import dataclass, field

from netcheck.av import markers
from netcheck.av.markers import ONSET_REFRACTORY_S, VideoFormat

MAX_VIDEO_FRAMES = 60 * 120
MAX_AUDIO_ONSETS = 1000
FREEZE_MIN_EXTRA_S = 0.150
DISPLAY_REFRESH_HZ = 60.0
"""A frame that a newer one replaces within the same refresh of a 60 Hz display is never seen."""
PAIRING_WINDOW_S = 0.5


@dataclass
class Recording:
    """Raw observations of one direction at its receiver (monotonic seconds)."""

    video_arrivals_s: list[float] = field(default_factory=list)
    video_indices: list[int | None] = field(default_factory=list)
    video_width: int = 0
    video_height: int = 0
    audio_onsets_s: list[float] = field(default_factory=list)
    audio_frames: int = 0


class TrackRecorder:
    """Reads frames from received tracks until stopped, recording arrival times and markers."""

    def __init__(self) -> None:
        self.recording = Recording()
        self.tasks: list[asyncio.Task] = []
        self.first_video = asyncio.Event()

    def follow(self, track) -> None:
        consume = self._consume_video if track.kind == "video" else self._consume_audio
        self.tasks.append(asyncio.ensure_future(consume(track)))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()

    async def _consume_video(self, track) -> None:
        from aiortc.mediastreams import MediaStreamError

        recording = self.recording
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            arrival_s = time.monotonic()
            if len(recording.video_arrivals_s) >= MAX_VIDEO_FRAMES:
                continue
            plane = frame.planes[0]
            index = markers.read_code(memoryview(plane), plane.line_size, frame.width)
            recording.video_arrivals_s.append(arrival_s)
            recording.video_indices.append(index)
            recording.video_width, recording.video_height = frame.width, frame.height
            self.first_video.set()

    async def _consume_audio(self, track) -> None:
        """Record burst onsets at the time a well-behaved receiver would play them.

        aiortc's audio jitter buffer holds every frame behind a lost packet until 16 packets
        (320 ms) have queued, where a browser would conceal the gap; arrival times after a loss
        say more about that buffer than about the network. So an onset's time is its RTP media
        time plus the smallest arrival-minus-media-time seen so far on this stream: the delay
        of the stream's unhindered frames.
        """
        from aiortc.mediastreams import MediaStreamError

        recording = self.recording
        clock = MediaTimeline()
        last_onset_s = -1e9
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            arrival_s = time.monotonic()
            recording.audio_frames += 1
            frame_start_s = clock.play_time_s(frame.pts, frame.sample_rate, arrival_s)
            if frame_start_s - last_onset_s < ONSET_REFRACTORY_S or len(recording.audio_onsets_s) >= MAX_AUDIO_ONSETS:
                continue
            samples = array("h", bytes(frame.planes[0]))
            onset = markers.first_onset(samples, len(frame.layout.channels))
            if onset is not None:
                last_onset_s = frame_start_s
                recording.audio_onsets_s.append(frame_start_s + onset / frame.sample_rate)


class MediaTimeline:
    """Maps a stream's RTP media time to the arrival time of its fastest frames so far."""

    def __init__(self) -> None:
        self.first_pts: int | None = None
        self.min_delay_s: float | None = None

    def play_time_s(self, pts: int | None, rate: int, arrival_s: float) -> float:
        """When the frame with `pts` would play at the stream's minimum delay (arrival if unknown)."""
        if pts is None or not rate:
            return arrival_s
        if self.first_pts is None:
            self.first_pts = pts
        delta = (pts - self.first_pts) % (1 << 32)  # RTP timestamps wrap at 2^32
        if delta >= 1 << 31:
            delta -= 1 << 32
        media_s = delta / rate
        delay_s = arrival_s - media_s
        self.min_delay_s = delay_s if self.min_delay_s is None else min(self.min_delay_s, delay_s)
        return media_s + self.min_delay_s


@dataclass(frozen=True)
class VideoSummary:
    fps: float | None
    freezes: int
    frozen_ms: float
    frames: int


def summarise_video(arrivals_s: list[float], window_end_s: float) -> VideoSummary:
    """Displayed fps from the first frame to the end of the window, and WebRTC-style freezes."""
    if not arrivals_s:
        return VideoSummary(None, 0, 0.0, 0)
    span_s = window_end_s - arrivals_s[0]
    shown = displayed_frames(arrivals_s)
    fps = (shown - 1) / span_s if span_s > 0 and shown > 1 else None
    # a stall at the end of the window is a freeze too: close the series at the window's end
    count, frozen_s = count_freezes(arrivals_s + [window_end_s] if window_end_s > arrivals_s[-1] else arrivals_s)
    return VideoSummary(fps, count, frozen_s * 1000.0, len(arrivals_s))


def displayed_frames(arrivals_s: list[float], refresh_hz: float = DISPLAY_REFRESH_HZ) -> int:
    """Frames a display refreshing at `refresh_hz` would show: one per refresh at most.

    After a stall, retransmitted frames arrive in a burst; counting them all would report a
    normal or even higher frame rate for a picture that froze and then jumped.
    """
    refreshes = {int((arrival - arrivals_s[0]) * refresh_hz) for arrival in arrivals_s}
    return len(refreshes)


def count_freezes(arrivals_s: list[float]) -> tuple[int, float]:
    """Freezes: an inter-frame gap > max(3 × mean gap, mean gap + 150 ms), the mean taken over the
    gaps before it that were not freezes (as WebRTC's freezeCount/totalFreezesDuration)."""
    count = 0
    frozen_s = 0.0
    normal_gaps: list[float] = []
    for previous, current in zip(arrivals_s, arrivals_s[1:]):
        gap = current - previous
        if len(normal_gaps) >= 3:
            mean_gap = statistics.fmean(normal_gaps[-30:])
            if gap > max(3 * mean_gap, mean_gap + FREEZE_MIN_EXTRA_S):
                count += 1
                frozen_s += gap
                continue
        normal_gaps.append(gap)
    return count, frozen_s


def marker_skews_ms(recording: Recording, video: VideoFormat) -> list[float]:
    """For each marker frame that arrived: its arrival minus the nearest audio onset (+ = audio first)."""
    skews = []
    onsets = recording.audio_onsets_s
    for arrival_s, index in zip(recording.video_arrivals_s, recording.video_indices):
        if index is None or not video.is_marker_frame(index) or not onsets:
            continue
        nearest = min(onsets, key=lambda onset: abs(onset - arrival_s))
        if abs(nearest - arrival_s) <= PAIRING_WINDOW_S:
            skews.append((arrival_s - nearest) * 1000.0)
    return skews
