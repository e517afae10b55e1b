"""Session events (docs/session-hub.md): a window's summary and its warnings, as the hub, `watch`
and `session report` read them. Pure: built from an assessment and the window's measurements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from netcheck.alerts import WarningEvent
from netcheck.model import Assessment, Measurement
from netcheck.probes.udp import UdpResult

FIGURE_METRICS = ("rtt_p95_ms", "jitter_ms", "loss_pct", "mos", "video_fps", "freezes_per_min", "av_skew_ms")
"""The cue metrics a summary carries as `figures` (what watch shows and end-to-end estimates use)."""


def summary_event(session_id: str, leg: str, at: str, index: int, window_s: float, assessment: Assessment,
                  measurements: Mapping[str, Measurement]) -> dict[str, Any]:
    values = {metric.metric: metric.value for verdict in assessment.cues.values() for metric in verdict.metrics}
    figures: dict[str, float | None] = {name: values.get(name) for name in FIGURE_METRICS}
    udp = measurements.get("udp")
    udp_result = udp.result if udp is not None else None
    figures["loss_up_pct"] = udp_result.loss_up_pct if isinstance(udp_result, UdpResult) else None
    figures["loss_down_pct"] = udp_result.loss_down_pct if isinstance(udp_result, UdpResult) else None
    cues = {
        cue.value: {
            "level": verdict.level.value,
            "deciding_metric": verdict.deciding.metric if verdict.deciding else None,
            "value": verdict.deciding.value if verdict.deciding else None,
            "unit": verdict.deciding.unit if verdict.deciding else None,
        }
        for cue, verdict in assessment.cues.items()
    }
    window = {"index": index, "window_s": window_s, "recommendation": assessment.recommendation.value,
              "level": assessment.level.value, "cues": cues, "figures": figures}
    return {"type": "summary", "session_id": session_id, "leg": leg, "at": at, "window": window}


def warning_event(session_id: str, leg: str, at: str, warning: WarningEvent) -> dict[str, Any]:
    return {"type": warning.kind, "session_id": session_id, "leg": leg, "at": at, "cue": warning.cue.value,
            "level": warning.level.value, "metric": warning.metric, "value": warning.value,
            "message": warning.message, "advice": warning.advice}
