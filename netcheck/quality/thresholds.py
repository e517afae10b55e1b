"""Per-clinic overrides of the metric registry's bounds, the video ladder, and the limits of
system advice.

A metric's bounds say from which value on it is good or fair; the rest is poor. Clinics override
them in the config file (`[thresholds.<metric>]`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from netcheck.errors import ConfigError
from netcheck.quality.metrics import RENAMED_METRICS, Bound, Direction, Metric

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


def apply_overrides(thresholds: tuple[Metric, ...], overrides: Mapping[str, Any]) -> tuple[Metric, ...]:
    """Return `thresholds` with the config's `[thresholds.<metric>]` values applied and validated."""
    by_metric = {threshold.name: threshold for threshold in thresholds}
    for metric, values in overrides.items():
        key = f"thresholds.{metric}"
        if metric in RENAMED_METRICS:
            raise ConfigError(f"{key}: renamed to thresholds.{RENAMED_METRICS[metric]} (it is now judged one way, "
                              "see docs/quality-model.md)")
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
    return tuple(by_metric[threshold.name] for threshold in thresholds)


def _bound(key: str, value: Any, direction: Direction) -> Bound:
    """A bound from the file; TOML writes `nan` and `inf` as numbers, and every comparison with NaN is
    false, so a NaN bound would pass the order check below and judge nothing (or everything)."""
    if any(_is_number(item) and not math.isfinite(item) for item in (value if isinstance(value, list) else [value])):
        raise ConfigError(f"{key}: must be a finite number, got {value!r}")
    if direction == "within":
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(_is_number(item) for item in value) or value[0] > value[1]):
            raise ConfigError(f"{key}: must be [low, high] with low ≤ high, e.g. [-125, 45]")
        return (float(value[0]), float(value[1]))
    if not _is_number(value):
        raise ConfigError(f"{key}: must be a number, got {value!r}")
    return float(value)


def _check_order(key: str, threshold: Metric) -> None:
    good, fair = threshold.good, threshold.fair
    if threshold.direction == "within":
        if not (fair[0] <= good[0] and good[1] <= fair[1]):  # type: ignore[index]
            raise ConfigError(f"{key}: the good range must lie inside the fair range")
    elif threshold.direction == "higher_is_better" and good < fair:  # type: ignore[operator]
        raise ConfigError(f"{key}: good ({good:g}) must be ≥ fair ({fair:g}) for {threshold.name}")
    elif threshold.direction == "lower_is_better" and good > fair:  # type: ignore[operator]
        raise ConfigError(f"{key}: good ({good:g}) must be ≤ fair ({fair:g}) for {threshold.name}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
