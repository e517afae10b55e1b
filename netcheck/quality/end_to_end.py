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
from netcheck.quality.metrics import METRICS, Metric


@dataclass(frozen=True)
class EndToEndFigure:
    """One estimated figure between the two people, judged like a leg's own figure."""

    metric: str
    """The metric it is judged by: rtt_p95_ms, one_way_ms, loss_one_way_pct, jitter_one_way_ms."""
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
    thresholds: tuple[Metric, ...] = METRICS,
) -> EndToEnd:
    """Estimate the figures between the two people from each leg's latest summary event.

    A voice from the client reaches the therapist over the client's upstream and the therapist's
    downstream, and the other way round: loss and jitter are joined per direction and the worse
    direction is judged, as a leg's own one-way figures are. Where a leg lacks its directions, its
    worse one-way figure stands in for both (an upper bound).
    """
    client, therapist = leg_figures(client_summary), leg_figures(therapist_summary)
    by_metric = {threshold.name: threshold for threshold in thresholds}
    rtt_ms = _both(client, therapist, "rtt_p95_ms", lambda a, b: a + b)
    loss_pct = _worse_path(client, therapist, "loss_up_pct", "loss_down_pct", "loss_one_way_pct", compound_loss_pct)
    jitter_ms = _worse_path(client, therapist, "jitter_up_ms", "jitter_down_ms", "jitter_one_way_ms",
                            lambda a, b: a + b)
    rtt_threshold = by_metric.get("rtt_p95_ms")
    one_way_ms = None if rtt_ms is None else rtt_ms / 2.0
    return EndToEnd(
        rtt_p95_ms=_figure("rtt_p95_ms", "delay (RTT p95)", rtt_ms, "ms", rtt_threshold),
        # one way is half the round trip, so it takes the round trip's level: one rule, one verdict
        one_way_ms=EndToEndFigure("one_way_ms", "delay one way", one_way_ms, "ms",
                                  _level(rtt_threshold, rtt_ms)),
        loss_pct=_figure("loss_one_way_pct", "packet loss one way", loss_pct, "%", by_metric.get("loss_one_way_pct")),
        jitter_ms=_figure("jitter_one_way_ms", "jitter one way (upper bound)", jitter_ms, "ms",
                          by_metric.get("jitter_one_way_ms")),
    )


def _worse_path(client: Mapping[str, Any], therapist: Mapping[str, Any], up: str, down: str, worse: str,
                combine: Callable[[float, float], float]) -> float | None:
    """The worse of client → therapist (client up, therapist down) and therapist → client."""
    def leg(figures: Mapping[str, Any], name: str) -> float | None:
        value = _number(figures.get(name))
        return value if value is not None else _number(figures.get(worse))

    paths = []
    for sender, receiver in ((client, therapist), (therapist, client)):
        sent, received = leg(sender, up), leg(receiver, down)
        if sent is not None and received is not None:
            paths.append(combine(sent, received))
    return max(paths) if len(paths) == 2 else None


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


def _level(threshold: Metric | None, value: float | None) -> Level:
    return Level.UNKNOWN if threshold is None or value is None else threshold.level(value)


def _figure(metric: str, label: str, value: float | None, unit: str, threshold: Metric | None) -> EndToEndFigure:
    return EndToEndFigure(metric, label, value, unit, _level(threshold, value))
