"""Sync markers: a coded frame index in the video and tone bursts in the audio. Pure, no I/O.

Every video frame carries its index as a row of black/white luma blocks (sync bits, 16 index
bits, 4 check bits). Every `MARKER_PERIOD_FRAMES` frames is a *marker frame*; at its capture
instant (minus the configured audio offset) the audio carries a 1 kHz tone burst. The receiver
reads the index of each frame and finds the onset of each burst; the difference of their
arrival times is the A/V skew.
"""

from __future__ import annotations

import functools
import math
from array import array
from dataclasses import dataclass

AUDIO_RATE_HZ = 48000
AUDIO_FRAME_SAMPLES = 960  # 20 ms
BURST_SAMPLES = 1440  # 30 ms
BURST_FREQ_HZ = 1000.0
BURST_AMPLITUDE = 16000
ONSET_THRESHOLD = 6000
"""|sample| above this, after silence, is a burst onset (Opus keeps silence near 0)."""
ONSET_REFRACTORY_S = 0.3
FIRST_MARKER_S = 0.5
MARKER_PERIOD_S = 1.0

SYNC_BITS = (1, 0, 1, 1)
INDEX_BITS = 16
CHECK_BITS = 4
LUMA_ONE = 235
LUMA_ZERO = 16


@dataclass(frozen=True)
class VideoFormat:
    width: int
    height: int
    fps: int

    @property
    def marker_period_frames(self) -> int:
        return max(1, round(MARKER_PERIOD_S * self.fps))

    @property
    def first_marker_frame(self) -> int:
        return round(FIRST_MARKER_S * self.fps)

    def is_marker_frame(self, index: int) -> bool:
        return index >= self.first_marker_frame and (index - self.first_marker_frame) % self.marker_period_frames == 0

    def marker_time_s(self, index: int) -> float:
        """Capture time of frame `index`, in seconds after the shared media clock started."""
        return index / self.fps


def block_size_px(width: int) -> int:
    """The side of one code block: a 28th of the width, so the 24 blocks and margins fit, and large
    enough to survive VP8 at low bitrates."""
    return max(4, width // 28)


def _check_value(index: int) -> int:
    return (bin(index).count("1") + (index >> 12) * 5 + 3) % 16


def code_bits(index: int) -> list[int]:
    index &= (1 << INDEX_BITS) - 1
    bits = list(SYNC_BITS)
    bits += [(index >> shift) & 1 for shift in range(INDEX_BITS - 1, -1, -1)]
    check = _check_value(index)
    bits += [(check >> shift) & 1 for shift in range(CHECK_BITS - 1, -1, -1)]
    return bits


def paint_code(luma: bytearray, line_size: int, width: int, index: int) -> None:
    """Write the coded index into a luma plane (top-left, one row of blocks)."""
    block = block_size_px(width)
    for position, bit in enumerate(code_bits(index)):
        value = LUMA_ONE if bit else LUMA_ZERO
        x0 = block * (2 + position)
        for y in range(block * 2, block * 3):
            start = y * line_size + x0
            luma[start:start + block] = bytes((value,)) * block


def read_code(luma: memoryview | bytes, line_size: int, width: int) -> int | None:
    """The frame index painted by `paint_code`, or None when the code does not check out."""
    block = block_size_px(width)
    y = block * 2 + block // 2
    bits = []
    for position in range(len(SYNC_BITS) + INDEX_BITS + CHECK_BITS):
        x = block * (2 + position) + block // 2
        bits.append(1 if luma[y * line_size + x] >= 128 else 0)
    if tuple(bits[:len(SYNC_BITS)]) != SYNC_BITS:
        return None
    index = int("".join(map(str, bits[len(SYNC_BITS):len(SYNC_BITS) + INDEX_BITS])), 2)
    check = int("".join(map(str, bits[-CHECK_BITS:])), 2)
    return index if check == _check_value(index) else None


@functools.lru_cache(maxsize=4)
def background_luma(width: int, height: int, scroll_rows: int = 64) -> bytes:
    """A smooth texture (`scroll_rows` extra rows, scrolled per frame) so the encoder sees motion, like a face.

    Built separably, a row pattern shifted per line through `bytes.translate`, to stay fast at 720p.
    """
    base_row = bytes(int(110 + 40 * math.sin(x / 23.0) + 15 * math.cos(x / 7.0)) for x in range(width))
    shift_tables = {shift: bytes(min(235, max(16, value + shift)) for value in range(256)) for shift in range(-40, 41)}
    rows = [base_row.translate(shift_tables[round(40 * math.sin(y / 17.0) * math.cos(y / 53.0))])
            for y in range(height + scroll_rows)]
    return b"".join(rows)


def burst_start_samples(video: VideoFormat, audio_offset_ms: float, count: int) -> list[int]:
    """Sample positions (on the shared clock) where audio bursts start: each marker frame's capture
    time minus the audio offset (positive offset: audio earlier)."""
    starts = []
    for k in range(count):
        index = video.first_marker_frame + k * video.marker_period_frames
        start_s = video.marker_time_s(index) - audio_offset_ms / 1000.0
        if start_s >= 0:
            starts.append(round(start_s * AUDIO_RATE_HZ))
    return starts


_BURST = array("h", (int(BURST_AMPLITUDE * math.sin(2 * math.pi * BURST_FREQ_HZ * n / AUDIO_RATE_HZ))
                     for n in range(BURST_SAMPLES)))


def audio_samples(first_sample: int, count: int, burst_starts: list[int]) -> array:
    """Mono s16 samples [first_sample, first_sample + count): silence, with bursts where they fall."""
    samples = array("h", bytes(2 * count))
    end = first_sample + count
    for start in burst_starts:
        if start >= end or start + BURST_SAMPLES <= first_sample:
            continue
        lo = max(start, first_sample)
        hi = min(start + BURST_SAMPLES, end)
        samples[lo - first_sample:hi - first_sample] = _BURST[lo - start:hi - start]
    return samples


def first_onset(samples: array, channels: int, threshold: int = ONSET_THRESHOLD) -> int | None:
    """Index (in samples per channel) of the first sample of channel 0 above `threshold`."""
    for position in range(0, len(samples), channels):
        value = samples[position]
        if value > threshold or value < -threshold:
            return position // channels
    return None
