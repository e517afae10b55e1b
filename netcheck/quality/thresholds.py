"""The cue table of DESIGN §5 as data, and per-clinic overrides of it.

A threshold says, for one metric of one cue, from which value on it is good or fair; the
rest is poor. Clinics override values in the config file (`[thresholds.<metric>]`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from netcheck.errors import ConfigError
from netcheck.model import Cue, Level

Direction = Literal["higher_is_better", "lower_is_better", "within"]
Bound = float | tuple[float, float]


@dataclass(frozen=True)
class Threshold:
    """One row of the cue table."""

    metric: str
    cue: Cue
    label: str
    """What a person calls it, e.g. "delay (RTT p95)"."""
    unit: str
    direction: Direction
    good: Bound
    fair: Bound
    source: str
    good_is_strict: bool = False
    """For lower_is_better: good means value < good (not ≤), as for loss "< 1 %"."""

    def level(self, value: float) -> Level:
        if self.direction == "within":
            good_low, good_high = self.good  # type: ignore[misc]
            fair_low, fair_high = self.fair  # type: ignore[misc]
            if good_low <= value <= good_high:
                return Level.GOOD
            return Level.FAIR if fair_low <= value <= fair_high else Level.POOR
        if self.direction == "higher_is_better":
            if value >= self.good:  # type: ignore[operator]
                return Level.GOOD
            return Level.FAIR if value >= self.fair else Level.POOR  # type: ignore[operator]
        is_good = value < self.good if self.good_is_strict else value <= self.good  # type: ignore[operator]
        if is_good:
            return Level.GOOD
        return Level.FAIR if value <= self.fair else Level.POOR  # type: ignore[operator]

    def describe(self, bound: Bound, strict: bool = False) -> str:
        """A bound written for people: '≥ 24 fps', '≤ 100 ms', '−125…+45 ms'."""
        unit = f" {self.unit}" if self.unit else ""
        if isinstance(bound, tuple):
            return f"{bound[0]:+g}…{bound[1]:+g}{unit}"
        sign = {"higher_is_better": "≥", "lower_is_better": "<" if strict else "≤"}[self.direction]
        return f"{sign} {bound:g}{unit}"


DEFAULT_THRESHOLDS: tuple[Threshold, ...] = (
    Threshold("video_fps", Cue.FACIAL_EXPRESSION, "received video frame rate", "fps", "higher_is_better", 24, 15,
              "micro-expressions last 1/25–1/5 s (Shen et al. 2012); telehealth floor 30 fps VGA"),
    Threshold("video_height", Cue.FACIAL_EXPRESSION, "received video height", "px", "higher_is_better", 720, 360,
              "720p ≈ 1.2 Mbps (Zoom, Azure Communication Services)"),
    Threshold("freezes_per_min", Cue.FACIAL_EXPRESSION, "video freezes", "/min", "lower_is_better", 0, 1,
              "WebRTC freeze definition"),
    Threshold("video_loss_pct", Cue.FACIAL_EXPRESSION, "video packet loss (before repair)", "%", "lower_is_better",
              1, 5, "Vidyo network guidelines: video loss < 1 % green, > 5 % red; beyond what NACK/RTX repairs "
              "in time the picture stalls and blurs", good_is_strict=True),
    Threshold("bandwidth_mbps", Cue.FACIAL_EXPRESSION, "bandwidth (worse direction)", "Mbps", "higher_is_better",
              1.5, 0.5, "720p 1.2 Mbps; 360p 0.5 Mbps; RANZCP 384 kbps minimum"),
    Threshold("loss_pct", Cue.VOCAL_TONE, "packet loss", "%", "lower_is_better", 1, 3,
              "Teams < 1 %; G.107 E-model", good_is_strict=True),
    Threshold("jitter_ms", Cue.VOCAL_TONE, "jitter (mean IPDV)", "ms", "lower_is_better", 20, 40,
              "Teams < 30 ms; Cloudflare AIM bands"),
    Threshold("mos", Cue.VOCAL_TONE, "voice quality (E-model MOS)", "", "higher_is_better", 4.0, 3.6,
              "ITU-T G.107 user-satisfaction bands"),
    Threshold("rtt_p95_ms", Cue.CONVERSATIONAL_TIMING, "delay (RTT p95)", "ms", "lower_is_better", 100, 250,
              "G.114 150/400 ms one-way with ~80 ms endpoint budget; turn gaps ≈ 200 ms (Levinson 2015); "
              "delay is misread as coldness (Schoenenberg et al. 2014)"),
    Threshold("av_skew_ms", Cue.LIP_SYNC, "audio/video skew (+ = audio leads)", "ms", "within", (-125, 45), (-185, 90),
              "ITU-R BT.1359 detectability / acceptability"),
)


VIDEO_LADDER: tuple[tuple[str, float], ...] = (
    ("720p", 1.2),
    ("540p", 0.8),
    ("360p", 0.5),
)
"""Bitrate each setting needs, Mbps (Zoom and Azure Communication Services publish 1.2 Mbps for
720p and 0.5 Mbps for 360p; 540p between), like Vonage's pre-call ladder."""
VIDEO_LADDER_MARGIN = 1.25
"""Measured bandwidth must exceed the need by 25 %: room for audio, retransmissions and
whatever else the household sends."""


def video_setting_for(bandwidth_mbps: float) -> str:
    """The highest rung whose bitrate, with the margin, fits the worse direction's bandwidth."""
    for setting, need_mbps in VIDEO_LADDER:
        if bandwidth_mbps >= need_mbps * VIDEO_LADDER_MARGIN:
            return setting
    return "audio only"


@dataclass(frozen=True)
class SystemLimits:
    """When a fact about the computer is worth a line of advice (not a cue metric)."""

    cpu_busy_pct: float = 85.0
    battery_low_pct: float = 20.0
    competing_traffic_mbps: float = 1.0
    """Traffic on the interface beyond the probes' own (≈ 0.1 Mbps) that suggests someone else is using it."""
    bufferbloat_ms: float = 100.0
    """A rise of the delay under load from which uploads or downloads will hurt a session."""


def apply_overrides(thresholds: tuple[Threshold, ...], overrides: Mapping[str, Any]) -> tuple[Threshold, ...]:
    """Return `thresholds` with the config's `[thresholds.<metric>]` values applied and validated."""
    by_metric = {threshold.metric: threshold for threshold in thresholds}
    for metric, values in overrides.items():
        key = f"thresholds.{metric}"
        if metric not in by_metric:
            raise ConfigError(f"{key}: unknown metric (known: {', '.join(by_metric)})")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{key}: must be a table with 'good' and/or 'fair'")
        threshold = by_metric[metric]
        changes: dict[str, Bound] = {}
        for name, value in values.items():
            if name not in ("good", "fair"):
                raise ConfigError(f"{key}.{name}: unknown key (use 'good' or 'fair')")
            changes[name] = _bound(f"{key}.{name}", value, threshold.direction)
        updated = replace(threshold, **changes)  # type: ignore[arg-type]
        _check_order(key, updated)
        by_metric[metric] = updated
    return tuple(by_metric[threshold.metric] for threshold in thresholds)


def _bound(key: str, value: Any, direction: Direction) -> Bound:
    if direction == "within":
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(_is_number(item) for item in value) or value[0] > value[1]):
            raise ConfigError(f"{key}: must be [low, high] with low ≤ high, e.g. [-125, 45]")
        return (float(value[0]), float(value[1]))
    if not _is_number(value):
        raise ConfigError(f"{key}: must be a number, got {value!r}")
    return float(value)


def _check_order(key: str, threshold: Threshold) -> None:
    good, fair = threshold.good, threshold.fair
    if threshold.direction == "within":
        if not (fair[0] <= good[0] and good[1] <= fair[1]):  # type: ignore[index]
            raise ConfigError(f"{key}: the good range must lie inside the fair range")
    elif threshold.direction == "higher_is_better" and good < fair:  # type: ignore[operator]
        raise ConfigError(f"{key}: good ({good:g}) must be ≥ fair ({fair:g}) for {threshold.metric}")
    elif threshold.direction == "lower_is_better" and good > fair:  # type: ignore[operator]
        raise ConfigError(f"{key}: good ({good:g}) must be ≤ fair ({fair:g}) for {threshold.metric}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
