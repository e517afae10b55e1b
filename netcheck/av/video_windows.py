"""A received picture summarised window by window for as long as a session lasts. Pure.

`analysis.summarise_video` judges one short call from its list of arrivals; a session's leg runs
for an hour, so here the freeze rule (analysis.count_freezes: a gap longer than max(3 × mean gap,
mean + 150 ms), the mean over the last 30 gaps that were not freezes, as WebRTC's freezeCount)
runs over the stream as it comes, and each window gets the frames, freezes and frozen time that
fell in it. A stall still going on at a window's end is frozen time of that window already, and
the freeze is counted once, in the window where it began to count.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

from netcheck.av.analysis import FREEZE_MIN_EXTRA_S, displayed_frames

NORMAL_GAPS_KEPT = 30
MIN_NORMAL_GAPS = 3
"""Gaps needed before any gap can be called a freeze (as count_freezes)."""
MAX_FRAMES_PER_WINDOW = 60 * 30
"""60 fps for 30 s; a sender beyond it is not the tab's test card, and its surplus is not kept."""


@dataclass(frozen=True)
class VideoWindow:
    frames: int
    fps: float | None
    """Frames a 60 Hz display would show in the window, per second; None when none came."""
    freezes: int
    frozen_ms: float
    width: int | None
    height: int | None


class VideoWindows:
    """Feed `frame()` each arrival (monotonic seconds); `take(end_s)` closes a window."""

    def __init__(self, start_s: float) -> None:
        self.window_start_s = start_s
        self.last_arrival_s: float | None = None
        self.normal_gaps: deque[float] = deque(maxlen=NORMAL_GAPS_KEPT)
        self.arrivals: list[float] = []
        self.freezes = 0
        self.frozen_s = 0.0
        self.stall_counted_until_s: float | None = None
        """A stall already counted as a freeze at a window's end, and frozen up to this time."""
        self.width: int | None = None
        self.height: int | None = None
        self.total_frames = 0

    def frame(self, arrival_s: float, width: int, height: int) -> None:
        last = self.last_arrival_s
        if last is not None:
            gap = arrival_s - last
            if self.stall_counted_until_s is not None:  # a freeze counted already: add only the rest of it
                self.frozen_s += max(0.0, arrival_s - self.stall_counted_until_s)
            elif self._is_freeze(gap):
                self.freezes += 1
                self.frozen_s += arrival_s - max(last, self.window_start_s)
            else:
                self.normal_gaps.append(gap)
        self.stall_counted_until_s = None
        self.last_arrival_s = arrival_s
        self.width, self.height = width, height
        self.total_frames += 1
        if len(self.arrivals) < MAX_FRAMES_PER_WINDOW:
            self.arrivals.append(arrival_s)

    def take(self, end_s: float) -> VideoWindow:
        """The window that ends at `end_s`; the next one starts there."""
        last = self.last_arrival_s
        if last is not None and self.stall_counted_until_s is None and self._is_freeze(end_s - last):
            self.freezes += 1
            self.frozen_s += end_s - max(last, self.window_start_s)
            self.stall_counted_until_s = end_s
        elif self.stall_counted_until_s is not None:
            self.frozen_s += max(0.0, end_s - self.stall_counted_until_s)
            self.stall_counted_until_s = end_s
        span_s = end_s - self.window_start_s
        shown = displayed_frames(self.arrivals) if self.arrivals else 0
        window = VideoWindow(
            frames=len(self.arrivals), fps=round(shown / span_s, 2) if shown and span_s > 0 else None,
            freezes=self.freezes, frozen_ms=round(min(self.frozen_s, max(0.0, span_s)) * 1000.0, 1),
            width=self.width if self.arrivals else None, height=self.height if self.arrivals else None)
        self.window_start_s = end_s
        self.arrivals = []
        self.freezes = 0
        self.frozen_s = 0.0
        return window

    def _is_freeze(self, gap_s: float) -> bool:
        if len(self.normal_gaps) < MIN_NORMAL_GAPS:
            return False
        mean_gap = statistics.fmean(self.normal_gaps)
        return gap_s > max(3 * mean_gap, mean_gap + FREEZE_MIN_EXTRA_S)
