"""The ranges every setting may take, one place for the config file, the flags and the probes.

A range is checked where a value enters: `config.py` for the file and the environment (the message
names the key), the CLI for a flag (the message names the flag), a probe's settings for callers of
the library. All three read these ranges, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from netcheck.errors import UsageError


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    unit: str
    low_exclusive: bool = False
    """(low, high] rather than [low, high]: a duration of 0 is no measurement."""

    def contains(self, value: float) -> bool:
        above_low = value > self.low if self.low_exclusive else value >= self.low
        return above_low and value <= self.high

    def check(self, value: float, name: str, shown: str | None = None) -> float:
        """`value`, or UsageError "NAME SHOWN outside LOW..HIGH UNIT" naming the flag or setting."""
        if not self.contains(value):
            raise UsageError(f"{name} {shown if shown is not None else f'{value:g}'} outside {self.describe()}")
        return value

    def describe(self) -> str:
        return f"{self.low:g}..{self.high:g} {self.unit}".rstrip()


UDP_INTERVAL_MS = Range(1.0, 1000.0, "ms")
UDP_DURATION_S = Range(0.0, 600.0, "s", low_exclusive=True)
UDP_WAIT_MAX_S = Range(0.2, 10.0, "s")
AV_DURATION_S = Range(0.5, 120.0, "s")
AV_TIMEOUT_S = Range(0.5, 120.0, "s")
THROUGHPUT_DURATION_S = Range(2.0, 60.0, "s")
THROUGHPUT_STREAMS = Range(1, 16, "streams")
SYSTEM_WINDOW_S = Range(0.0, 600.0, "s", low_exclusive=True)
AGENT_WINDOW_S = Range(1.0, 3600.0, "s")
AGENT_UDP_RATE_PPS = Range(1.0, 100.0, "packets/s")
AGENT_AV_DURATION_S = Range(1.0, 30.0, "s")
AGENT_AV_EVERY_S = Range(0.0, 86400.0, "s")
AUDIO_OFFSET_MS = Range(-500.0, 500.0, "ms")
UDP_SIZE_BYTES = Range(64, 1472, "bytes")
"""What the config accepts; the wire's own floor (48 bytes, 64 with an HMAC tag) is checked by the probe."""
STORE_MAX_POINTS = Range(1000, 100_000_000, "points")
STORE_RETENTION_DAYS = Range(0.01, 3650.0, "days")
STORE_MAX_ROWS = Range(10, 100_000_000, "rows")
"""Checks, windows, session events: a store that kept fewer could not show the check it just made."""
CHECK_BURST = Range(1, 100_000, "checks")
CHECK_EVERY_S = Range(0.0001, 86400.0, "s")
PAGE_CALL_WATCH_S = Range(1.0, 60.0, "s")
"""The browser check page's call (`[serve] page_call_watch_s`): at least a second of figures; the posted call ≤ 120 s."""
PAGE_VOICE_S = Range(1.0, 15.0, "s")
"""At least 50 voice packets; at most 750, within the 1,000 the check's body holds."""
PAGE_SPEED_PHASE_S = Range(1.5, 30.0, "s")
"""Each speed phase: the 1 s ramp (probes/throughput.py RAMP_S), which is not counted, and ≥ 0.5 s measured."""
INFLUX_TIMEOUT_S = Range(0.5, 120.0, "s")
INFLUX_BATCH_SIZE = Range(1, 50_000, "points")
INFLUX_RETRY_MAX_S = Range(1.0, 300.0, "s")
