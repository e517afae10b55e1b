"""Session events (docs/session-hub.md): a window's summary and its warnings, as the hub, `watch`
and `session report` read them. Pure: built from an assessment and the window's measurements.

A warning's words are not part of what an agent says: the hub and the report check its cue,
metric and value (`check_warning_fields`) and write the sentences from them (quality/warnings.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from netcheck.quality.metrics import METRIC_BY_NAME
from netcheck.quality.warnings import warning_text

from netcheck.session.alerts import WarningEvent
from netcheck.model import Assessment, Cue, Measurement, cues_to_dict
from netcheck.results import UdpResult

FIGURE_METRICS = ("rtt_p95_ms", "jitter_one_way_ms", "loss_one_way_pct", "mos", "video_fps", "frozen_pct",
                  "av_skew_ms")
"""The cue metrics a summary carries as `figures` (what watch shows and end-to-end estimates use)."""
UDP_DIRECTION_FIGURES = ("loss_up_pct", "loss_down_pct", "jitter_up_ms", "jitter_down_ms")
"""The UDP probe's one-way figures: the end-to-end estimate joins one leg's upstream to the other's
downstream."""


def summary_event(session_id: str, leg: str, at: str, index: int, window_s: float, assessment: Assessment,
                  measurements: Mapping[str, Measurement]) -> dict[str, Any]:
    values = {metric.metric: metric.value for verdict in assessment.cues.values() for metric in verdict.metrics}
    figures: dict[str, float | None] = {name: values.get(name) for name in FIGURE_METRICS}
    udp = measurements.get("udp")
    udp_result = udp.result if udp is not None else None
    for name in UDP_DIRECTION_FIGURES:
        figures[name] = getattr(udp_result, name) if isinstance(udp_result, UdpResult) else None
    window = {"index": index, "window_s": window_s, "recommendation": assessment.recommendation.value,
              "level": assessment.level.value, "cues": cues_to_dict(assessment, detail=False), "figures": figures}
    return {"type": "summary", "session_id": session_id, "leg": leg, "at": at, "window": window}


def warning_event(session_id: str, leg: str, at: str, warning: WarningEvent) -> dict[str, Any]:
    return {"type": warning.kind, "session_id": session_id, "leg": leg, "at": at, "cue": warning.cue.value,
            "level": warning.level.value, "metric": warning.metric, "value": warning.value,
            "message": warning.message, "advice": warning.advice}


LEGACY_METRIC_CUES = {"loss_pct": Cue.VOCAL_TONE, "jitter_ms": Cue.VOCAL_TONE, "freezes_per_min": Cue.FACIAL_EXPRESSION}
"""Names older agents still post (docs/session-hub.md): accepted, worded with the cue's generic sentence."""
VALUE_RANGE_BY_UNIT = {"%": (0.0, 100.0), "ms": (-60_000.0, 60_000.0), "fps": (0.0, 1000.0), "px": (0.0, 100_000.0),
                       "Mbps": (0.0, 100_000.0), "": (0.0, 5.0)}
"""What a metric of each unit can measure at all (MOS is the unit-less one, 1–5); a value outside is a forgery."""
LEGACY_UNITS = {"loss_pct": "%", "jitter_ms": "ms", "freezes_per_min": "fps"}


class WarningFieldError(ValueError):
    """A warning's cue, metric or value the hub refuses; `key` names the field, `reason` is a stable code."""

    def __init__(self, key: str, message: str, reason: str) -> None:
        super().__init__(message)
        self.key = key
        self.reason = reason


def check_warning_fields(cue: object, metric: object, value: object) -> tuple[Cue, str | None, float | None]:
    """(cue, metric, value) of a posted or stored warning: a known cue, a known metric (or null), a
    finite number in the metric's range (or null). Raises WarningFieldError. A metric of another cue
    is taken (agents and fixtures have posted them) and worded with the cue's generic sentence
    (quality/warnings.py): nothing in it can be the sender's words."""
    if not isinstance(cue, str) or cue not in {known.value for known in Cue}:
        raise WarningFieldError("cue", f"unknown cue (known: {', '.join(known.value for known in Cue)})",
                                "unknown_cue")
    if metric is not None and not isinstance(metric, str):
        raise WarningFieldError("metric", "must be a metric name or null", "bad_type")
    row = METRIC_BY_NAME.get(metric or "")
    metric_cue = row.cue if row is not None else LEGACY_METRIC_CUES.get(metric or "")
    if metric is not None and metric_cue is None:
        raise WarningFieldError("metric", "unknown metric", "unknown_metric")
    if value is None:
        return Cue(cue), metric, None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WarningFieldError("value", "must be a number or null", "bad_type")
    number = float(value) if not isinstance(value, int) or abs(value) < 2**63 else math.inf
    unit = row.unit if row is not None else LEGACY_UNITS.get(metric or "", "%")
    low, high = VALUE_RANGE_BY_UNIT.get(unit, (-1e6, 1e6)) if metric is not None else (-1e6, 1e6)
    if not math.isfinite(number) or not low <= number <= high:
        raise WarningFieldError("value", f"number out of range ({low:g}…{high:g})", "out_of_range")
    return Cue(cue), metric, number


def with_warning_words(event: Mapping[str, Any], leg: str) -> dict[str, Any]:
    """A warning whose cue, metric and value are checked, with the sentences the server writes for
    them on `leg`'s connection as its `message` and `advice`; a summary as it is."""
    if event["type"] == "summary":
        return dict(event)
    message, advice = warning_text(event["type"] == "warning_raised", Cue(event["cue"]), leg, event.get("metric"),
                                   event.get("value"))
    return {**event, "message": message, "advice": advice}
