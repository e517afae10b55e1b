"""The cue metrics of a session's own call (`CallResult`, issue 25), and why its picture suffers. Pure.

The same metric rows judge the call as the probes: a call's figures are the best evidence of what
the two people see and hear (docs/quality-model.md, "The call's own statistics"). Each metric
takes the worse of the directions it has; a direction without the figure is left out, and a metric
with no figure at all stays unknown (never 0). Timing is RTCP's round trip, not a p95: its source
says so. The jitter buffer's delay is reported, not judged: it is the receiver's answer to the
jitter, which is judged.
"""

from __future__ import annotations

from netcheck.quality import emodel
from netcheck.quality.advice import VideoCause
from netcheck.results import CallResult

CPU_LIMITED_PCT = 50.0
"""The sending video held back by the CPU for at least half the window: the computer, not the network."""
BANDWIDTH_LIMITED_PCT = 50.0


def call_metrics(call: CallResult, settled_s: float) -> dict[str, tuple[float, str, str | None]]:
    """Cue metric name → (value, source, direction) for every figure the call gave.

    `settled_s`: from this age of the call its adapting resolution reflects the path
    (assess.RESOLUTION_SETTLED_S); before it the height is reported, not judged.
    """
    directions = {"upstream": call.upstream, "downstream": call.downstream}
    metrics: dict[str, tuple[float, str, str | None]] = {}

    def worst(field: str, metric: str, higher_is_worse: bool = True) -> None:
        figures = [(float(value), name) for name, direction in directions.items()
                   if direction is not None and (value := getattr(direction, field)) is not None]
        if figures:
            value, name = max(figures) if higher_is_worse else min(figures)
            metrics[metric] = (value, f"call.{name}.{field}", name)

    worst("video_fps", "video_fps", higher_is_worse=False)
    if call.downstream is not None and call.downstream.video_frozen_ms is not None and call.duration_s:
        frozen_pct = 100.0 * call.downstream.video_frozen_ms / (call.duration_s * 1000.0)
        metrics["frozen_pct"] = (round(min(100.0, frozen_pct), 2), "call.downstream.video_frozen_ms / call.duration_s",
                                 "downstream")
    if call.call_s is not None and call.call_s >= settled_s:
        worst("video_height", "video_height", higher_is_worse=False)
    worst("video_loss_pct", "video_loss_pct")
    worst("audio_loss_pct", "loss_one_way_pct")
    worst("audio_jitter_ms", "jitter_one_way_ms")
    worst("audio_concealed_pct", "audio_concealed_pct")
    if call.rtt_ms is not None:
        metrics["rtt_p95_ms"] = (call.rtt_ms, "call.rtt_ms: the window's RTCP round trips (a mean, not a p95)", None)
    if all(name in metrics for name in ("loss_one_way_pct", "jitter_one_way_ms", "rtt_p95_ms")):
        mos = emodel.mos(call.rtt_ms / 2.0, metrics["jitter_one_way_ms"][0],  # type: ignore[operator]
                         metrics["loss_one_way_pct"][0])
        metrics["mos"] = (round(mos, 2), "G.107 E-model of the call's RTT / 2, one-way jitter and loss", None)
    return metrics


def call_video_cause(call: CallResult, direction_name: str) -> VideoCause | None:
    """Why the picture suffers, where the call says it: the sender's own quality limitation.

    Only for the direction this leg sends (upstream): its browser knows why it held its video back.
    None when the call does not say; assess then falls back to the probes' reading of the network.
    """
    if direction_name != "upstream":
        return None
    if (call.cpu_limited_pct or 0.0) >= CPU_LIMITED_PCT or (call.cpu_limited_pct is None
                                                             and call.quality_limitation == "cpu"):
        return VideoCause("upstream", "the computer is too busy to send video (its browser held the picture back "
                          "to keep up)", "close other programs, browser tabs and video apps")
    if (call.bandwidth_limited_pct or 0.0) >= BANDWIDTH_LIMITED_PCT or (call.bandwidth_limited_pct is None
                                                                         and call.quality_limitation == "bandwidth"):
        figure = (f", about {call.available_outgoing_kbps:.0f} kbit/s available" if call.available_outgoing_kbps
                  is not None else "")
        return VideoCause("upstream", f"the connection cannot carry more video{figure}",
                          "stop other uploads, downloads and streaming, or move to the router")
    return None

