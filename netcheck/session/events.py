"""Session events (docs/session-hub.md): a window's summary and its warnings, as the hub, `watch`
and `session report` read them. Pure: built from an assessment and the window's measurements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from netcheck.session.alerts import WarningEvent
from netcheck.model import Assessment, Measurement, cues_to_dict
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
