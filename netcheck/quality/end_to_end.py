"""Client-to-therapist figures estimated from the two legs' summaries. Pure.

Each agent measures only its own leg (itself ↔ the clinic's server); the people in the call
hear each other through both. So delays add, losses compound, and jitter adds as an upper
bound (the two legs' variations may partly cancel, never more than add). An estimate: the call
itself may take another path (peer to peer), but a relayed call takes this one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from netcheck.model import Level
from netcheck.quality.thresholds import DEFAULT_THRESHOLDS, Threshold


@dataclass(frozen=True)
class EndToEndFigure:
    """One estimated figure between the two people, judged like a leg's own figure."""

    metric: str
    """The threshold metric it is judged by: rtt_p95_ms, one_way_ms, loss_pct, jitter_ms."""
    label: str
    value: float | None
    """None when either leg lacks the figure."""
    unit: str
    level: Level
    """UNKNOWN when value is None."""


@dataclass(frozen=True)
class EndToEnd:
    """The estimate as the watch view shows it."""

    rtt_p95_ms: EndToEndFigure
    one_way_ms: EndToEndFigure
    """Half the round trip: what G.114 calls mouth-to-ear delay, before the endpoints' own budget."""
    loss_pct: EndToEndFigure
    jitter_ms: EndToEndFigure

    def figures(self) -> tuple[EndToEndFigure, ...]:
        return (self.rtt_p95_ms, self.one_way_ms, self.loss_pct, self.jitter_ms)


def leg_figures(summary: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """`window.figures` of a summary event, or {} when the event or any part of it is missing."""
    if not isinstance(summary, Mapping):
        return {}
    window = summary.get("window")
    figures = window.get("figures") if isinstance(window, Mapping) else None
    return figures if isinstance(figures, Mapping) else {}


def end_to_end(
    client_summary: Mapping[str, Any] | None,
    therapist_summary: Mapping[str, Any] | None,
    thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS,
) -> EndToEnd:
    """Estimate the figures between the two people from each leg's latest summary event."""
    client, therapist = leg_figures(client_summary), leg_figures(therapist_summary)
    by_metric = {threshold.metric: threshold for threshold in thresholds}
    rtt_ms = _both(client, therapist, "rtt_p95_ms", lambda a, b: a + b)
    loss_pct = _both(client, therapist, "loss_pct", compound_loss_pct)
    jitter_ms = _both(client, therapist, "jitter_ms", lambda a, b: a + b)
    rtt_threshold = by_metric.get("rtt_p95_ms")
    one_way_ms = None if rtt_ms is None else rtt_ms / 2.0
    return EndToEnd(
        rtt_p95_ms=_figure("rtt_p95_ms", "delay (RTT p95)", rtt_ms, "ms", rtt_threshold),
        # one way is half the round trip, so it takes the round trip's level: one rule, one verdict
        one_way_ms=EndToEndFigure("one_way_ms", "delay one way", one_way_ms, "ms",
                                  _level(rtt_threshold, rtt_ms)),
        loss_pct=_figure("loss_pct", "packet loss", loss_pct, "%", by_metric.get("loss_pct")),
        jitter_ms=_figure("jitter_ms", "jitter (upper bound)", jitter_ms, "ms", by_metric.get("jitter_ms")),
    )


def compound_loss_pct(a_pct: float, b_pct: float) -> float:
    """A packet arrives only if it survives both legs: 1 − (1−a)(1−b), in percent."""
    a, b = _clamp(a_pct / 100.0), _clamp(b_pct / 100.0)
    return (1.0 - (1.0 - a) * (1.0 - b)) * 100.0


def _both(client: Mapping[str, Any], therapist: Mapping[str, Any], metric: str,
          combine: Callable[[float, float], float]) -> float | None:
    a, b = _number(client.get(metric)), _number(therapist.get(metric))
    return None if a is None or b is None else float(combine(a, b))


def _number(value: Any) -> float | None:
    """A finite, non-negative figure, else None: the summaries come from the network."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def _clamp(fraction: float) -> float:
    return min(1.0, max(0.0, fraction))


def _level(threshold: Threshold | None, value: float | None) -> Level:
    return Level.UNKNOWN if threshold is None or value is None else threshold.level(value)


def _figure(metric: str, label: str, value: float | None, unit: str, threshold: Threshold | None) -> EndToEndFigure:
    return EndToEndFigure(metric, label, value, unit, _level(threshold, value))
