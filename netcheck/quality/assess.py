"""assess(): per-cue levels, a recommendation and advice from probe results. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from netcheck.model import Assessment, Cue, CueVerdict, Level, MetricVerdict, ProbeResult, Recommendation, Status
from netcheck.results import AvDirection, AvResult, CallResult, ReachResult, SystemResult, ThroughputResult, UdpResult
from netcheck.quality import emodel
from netcheck.quality.advice import (
    SERVER_BUSY_ADVICE,
    bufferbloat_advice,
    metric_advice,
    path_advice,
    probe_failure_advice,
    reach_advice,
    system_advice,
    video_cause,
    video_setting_advice,
)
from netcheck.quality.call import call_metrics, call_video_cause
from netcheck.quality.metrics import CUE_WORDS, METRICS, Metric
from netcheck.quality.thresholds import SystemLimits, video_setting_for

SEVERITY = {Level.GOOD: 0, Level.FAIR: 1, Level.POOR: 2}
RESOLUTION_SETTLED_S = 20.0
"""A call's length from which an adapting sender's resolution reflects the path. WebRTC's congestion
control starts at 300 kbps (Chromium's default start bitrate: 640x360 from a 720p camera) and may
raise its estimate by at most 8 % a second (GCC, draft-ietf-rmcat-gcc §5.5: η = 1.08), so reaching the
≈ 1.5 Mbps of 720p takes about ln(5)/ln(1.08) ≈ 21 s unless its probes find the room sooner. A
browser check's 6 s call measured 360p upstream on a clean loopback every time: the ramp, not the
path. Shorter calls leave the height unjudged; the speed step's video setting speaks for the path."""


@dataclass(frozen=True)
class Measured:
    """One cue metric's value as measured, and where it came from."""

    value: float
    source: str
    """The probe field(s), and how they were combined or converted."""
    direction: str | None = None
    """upstream or downstream when the worse of two one-way figures decided."""
    server_busy: bool = False
    """Measured while the clinic's server was short of CPU: worse than good, it is not judged (SPOILED)."""


SPOILED = "measured while the clinic's test server was short of CPU: not judged"
"""A node short of CPU adds its own delay, loss and frozen frames; it never makes a figure better. So a
good figure stands, and one worse than good is reported, not held against the client's connection."""


def _spoiled_if(busy: bool | None, metrics: dict[str, Measured]) -> dict[str, Measured]:
    return {name: replace(m, server_busy=True) for name, m in metrics.items()} if busy else metrics


def measured_metrics(measurements: Mapping[str, ProbeResult]) -> dict[str, Measured]:
    """Cue metric name → its measured value, for every metric a successful probe gave.

    A metric that was not measured is absent: it never enters a cue or the MOS as 0.
    """
    metrics: dict[str, Measured] = {}
    udp = measurements.get("udp")
    udp_got_through = isinstance(udp, UdpResult) and udp.status == Status.OK and udp.rtt_mean_ms is not None
    av = measurements.get("av")
    if udp_got_through:  # the voice stream ran beside the call: the call's mark is the stream's (AvResult.server_busy)
        metrics.update(_spoiled_if(_server_busy(av), voice_metrics_from_udp(udp)))  # type: ignore[arg-type]
    if isinstance(av, AvResult) and av.status == Status.OK and av.upstream and av.downstream:
        from_call = face_metrics_from_call(av)
        if av.av_skew_ms is not None:
            from_call["av_skew_ms"] = Measured(av.av_skew_ms, "av.av_skew_ms (the worse direction)")
        if not udp_got_through:
            from_call.update(voice_metrics_from_call(av.upstream, av.downstream))
        metrics.update(_spoiled_if(av.server_busy, from_call))
    call = measurements.get("call")
    if isinstance(call, CallResult) and call.status == Status.OK:  # the session's own call (issue 25)
        metrics.update({name: Measured(value, source, direction)
                        for name, (value, source, direction) in call_metrics(call, RESOLUTION_SETTLED_S).items()})
    throughput = measurements.get("throughput")
    if isinstance(throughput, ThroughputResult) and throughput.status == Status.OK:
        busy = bool(throughput.server_busy)
        directions = [(value, name) for value, name in ((throughput.download_mbps, "download_mbps"),
                                                          (throughput.upload_mbps, "upload_mbps")) if value is not None]
        if directions:
            bandwidth, bandwidth_from = min(directions)
            metrics["bandwidth_mbps"] = Measured(bandwidth, f"throughput.{bandwidth_from}", server_busy=busy)
        loaded = [(value, name) for value, name in ((throughput.loaded_rtt_down_ms, "loaded_rtt_down_ms"),
                                                      (throughput.loaded_rtt_up_ms, "loaded_rtt_up_ms")) if value is not None]
        idle = metrics.get("rtt_p95_ms")
        if loaded and (idle is None or max(loaded)[0] >= idle.value):  # DESIGN §5: timing under load when
            rtt, rtt_from = max(loaded)                                  # measured, the worst delay a session sees
            metrics["rtt_p95_ms"] = Measured(rtt, f"throughput.{rtt_from} (RTT p95 under load)", server_busy=busy)
    return metrics


def one_way_loss_from_round_trip_pct(round_trip_pct: float) -> float:
    """The one-way loss that, suffered in both directions alike, gives `round_trip_pct` over the round
    trip: 1 − √(1 − rt). Used only when the reflector could not say which direction lost."""
    fraction = min(1.0, max(0.0, round_trip_pct / 100.0))
    return (1.0 - math.sqrt(1.0 - fraction)) * 100.0


def worse_direction(up: float | None, down: float | None) -> tuple[float, str] | None:
    """(value, "upstream" | "downstream") of the larger of two one-way figures; None if either is missing."""
    if up is None or down is None:
        return None
    return (up, "upstream") if up >= down else (down, "downstream")


def voice_metrics_from_udp(udp: UdpResult) -> dict[str, Measured]:
    """Vocal tone and timing from the UDP stream: a voice travels one way, so the worse direction's
    one-way loss and jitter are judged, and the E-model hears the same one-way figures."""
    metrics: dict[str, Measured] = {}
    loss = worse_direction(udp.loss_up_pct, udp.loss_down_pct)
    if loss is not None:
        metrics["loss_one_way_pct"] = Measured(loss[0], f"udp.loss_{_short(loss[1])}_pct", loss[1])
    elif udp.loss_pct is not None:
        metrics["loss_one_way_pct"] = Measured(
            round(one_way_loss_from_round_trip_pct(udp.loss_pct), 3),
            "1 − √(1 − udp.loss_pct): the reflector did not say which direction lost")
    jitter = worse_direction(udp.jitter_up_ms, udp.jitter_down_ms)
    if jitter is not None:
        metrics["jitter_one_way_ms"] = Measured(jitter[0], f"udp.jitter_{_short(jitter[1])}_ms", jitter[1])
    elif udp.jitter_ms is not None:
        metrics["jitter_one_way_ms"] = Measured(
            udp.jitter_ms, "udp.jitter_ms, round trip: the probe could not tell the directions apart")
    if udp.rtt_p95_ms is not None:
        metrics["rtt_p95_ms"] = Measured(udp.rtt_p95_ms, "udp.rtt_p95_ms (idle)")
    if "loss_one_way_pct" in metrics and "jitter_one_way_ms" in metrics and udp.rtt_mean_ms is not None:
        mos = emodel.mos(udp.rtt_mean_ms / 2.0, metrics["jitter_one_way_ms"].value, metrics["loss_one_way_pct"].value)
        metrics["mos"] = Measured(round(mos, 2), "G.107 E-model of udp.rtt_mean_ms / 2 and the one-way jitter and loss")
    return metrics


def face_metrics_from_call(av: AvResult) -> dict[str, Measured]:
    """Facial expression from the A/V call, each figure from the direction in which it is worse.

    A direction whose receiver watched and saw no frame at all in a finished call measured something:
    nothing got through, so 0 fps and frozen the whole time (a direction with no video sent — a
    browser without a camera — has no freeze count and stays unmeasured). The received height is
    judged only where that direction's sender adapts its resolution to the path, and only in a call
    long enough for the sender's rate control to have settled (RESOLUTION_SETTLED_S): a fixed-size
    sender's height says nothing about the path, nor does a browser's start-up ramp.
    """
    metrics: dict[str, Measured] = {}
    directions = {"upstream": av.upstream, "downstream": av.downstream}
    window_ms = (av.duration_s or 0.0) * 1000.0
    fps: list[tuple[float, str]] = []
    frozen: list[tuple[float, str]] = []
    for name, direction in directions.items():
        assert direction is not None
        # the receiver watched (it counted freezes) and no frame came: nothing got through
        nothing_arrived = (direction.video_freezes is not None and direction.video_height is None
                           and direction.video_fps is None)
        if nothing_arrived:
            fps.append((0.0, name))
        elif direction.video_fps is not None:
            fps.append((direction.video_fps, name))
        if window_ms > 0 and (nothing_arrived or direction.video_frozen_ms is not None):
            frozen_ms = window_ms if nothing_arrived else min(window_ms, direction.video_frozen_ms or 0.0)
            frozen.append((round(100.0 * frozen_ms / window_ms, 2), name))
    if fps:
        value, name = min(fps)
        metrics["video_fps"] = Measured(value, f"av.{name}.video_fps", name)
    if frozen:
        value, name = max(frozen)
        metrics["frozen_pct"] = Measured(value, f"av.{name}.video_frozen_ms / av.duration_s", name)
    settled = (av.duration_s or 0.0) >= RESOLUTION_SETTLED_S
    heights = [(float(d.video_height), name) for name, d in directions.items()
               if d is not None and d.resolution_adapts and settled and d.video_height is not None]
    if heights:
        value, name = min(heights)
        metrics["video_height"] = Measured(value, f"av.{name}.video_height", name)
    losses = [(d.video_loss_pct, name) for name, d in directions.items() if d is not None and d.video_loss_pct is not None]
    if losses:  # a short probe may see no freeze yet on a path whose loss will freeze a session
        value, name = max(losses)
        metrics["video_loss_pct"] = Measured(value, f"av.{name}.video_loss_pct", name)
    return metrics


def voice_metrics_from_call(upstream: AvDirection, downstream: AvDirection) -> dict[str, Measured]:
    """Voice and timing from the A/V call's audio when the UDP probe got nothing through.

    That happens when a firewall blocks UDP and the call went through TURN over TCP: the call's
    own audio is then the best evidence of what a voice will sound like. Its loss and jitter are
    one-way already (each receiver's RTP counts; RFC 3550 jitter); its RTT is RTCP's smoothed one,
    not a p95. The sources say so.
    """
    metrics: dict[str, Measured] = {}
    loss = worse_direction(upstream.audio_loss_pct, downstream.audio_loss_pct)
    jitter = worse_direction(upstream.audio_jitter_ms, downstream.audio_jitter_ms)
    rtts = [rtt for rtt in (upstream.rtt_ms, downstream.rtt_ms) if rtt is not None]
    if loss is None or jitter is None or not rtts:
        return metrics
    rtt = max(rtts)
    metrics["loss_one_way_pct"] = Measured(loss[0], f"av.{loss[1]}.audio_loss_pct (UDP probe got no answer)", loss[1])
    metrics["jitter_one_way_ms"] = Measured(
        jitter[0], f"av.{jitter[1]}.audio_jitter_ms, RFC 3550 (UDP probe got no answer)", jitter[1])
    metrics["rtt_p95_ms"] = Measured(rtt, "av rtt_ms, RTCP (UDP probe got no answer)")
    metrics["mos"] = Measured(round(emodel.mos(rtt / 2.0, jitter[0], loss[0]), 2),
                              "G.107 E-model of the call's audio figures")
    return metrics


def _short(direction: str) -> str:
    return {"upstream": "up", "downstream": "down"}[direction]


def assess(
    measurements: Mapping[str, ProbeResult],
    thresholds: tuple[Metric, ...] = METRICS,
    limits: SystemLimits = SystemLimits(),
) -> Assessment:
    metrics = measured_metrics(measurements)
    av = measurements.get("av")
    here = frozenset(av.not_measured_here) if isinstance(av, AvResult) else frozenset()
    cues = {cue: _judge_cue(cue, thresholds, metrics, here) for cue in Cue}
    av = measurements.get("av")
    # a call the clinic's busy server refused, or could not carry while short of CPU, says nothing of the path
    av_failed = av is not None and av.status != Status.OK and not _server_busy(av)
    reach = measurements.get("reach")
    # UDP blocked and a video call that was tried and failed: nothing real-time gets through
    no_realtime_path = (isinstance(reach, ReachResult) and reach.udp_status in ("blocked", "unreachable")
                        and isinstance(av, AvResult) and av_failed)
    throughput = measurements.get("throughput")
    video_setting = (video_setting_for(metrics["bandwidth_mbps"].value)
                     if isinstance(throughput, ThroughputResult) and "bandwidth_mbps" in metrics else None)
    if video_setting != "720p" and _server_busy(throughput):
        video_setting = None  # a lower rung from a speed test the busy server held back: not judged
    bandwidth_short = video_setting == "audio only"  # the ladder's margin: fair bandwidth may still carry no video
    recommendation = Recommendation.PHONE if no_realtime_path else recommend(cues, av_failed or bandwidth_short)
    measured_levels = [verdict.level for verdict in cues.values() if verdict.level != Level.UNKNOWN]
    level = max(measured_levels, key=SEVERITY.__getitem__) if measured_levels else Level.UNKNOWN

    system = measurements.get("system")
    system = system if isinstance(system, SystemResult) and system.status == Status.OK else None
    udp_blocked = isinstance(reach, ReachResult) and reach.udp_status in ("blocked", "unreachable")
    advice = []
    for verdict in cues.values():
        for metric in verdict.metrics:
            cause = None
            if isinstance(av, AvResult) and metric.cue == Cue.FACIAL_EXPRESSION and metric.direction is not None:
                cause = video_cause(metric.direction, getattr(av, metric.direction), system, limits)
            call = measurements.get("call")
            if isinstance(call, CallResult) and metric.cue == Cue.FACIAL_EXPRESSION and metric.direction is not None:
                cause = call_video_cause(call, metric.direction) or cause
            if line := metric_advice(metric, _registry_row(thresholds, metric.metric), cause):
                advice.append(line)
    for name, result in measurements.items():
        # the reach probe names the cause of a silent UDP port (blocked) and says what to do itself
        if result.status != Status.OK and not (name == "udp" and udp_blocked):
            if line := probe_failure_advice(name, result.status.value, _server_busy(av if name == "udp" else result)):
                advice.append(line)
    if any(_spoiled(verdict) for cue in cues.values() for verdict in cue.metrics):
        advice.append(SERVER_BUSY_ADVICE)
    if isinstance(av, AvResult) and av.status == Status.OK and (line := path_advice(av)):
        advice.append(line)
    if isinstance(reach, ReachResult):
        advice.extend(reach_advice(reach, call_went_through=isinstance(av, AvResult) and av.status == Status.OK))
    if isinstance(throughput, ThroughputResult) and throughput.status == Status.OK:
        if not throughput.server_busy and (line := bufferbloat_advice(throughput, limits)):
            advice.append(line)
        if video_setting is not None and (line := video_setting_advice(video_setting, metrics["bandwidth_mbps"].value)):
            advice.append(line)
    if system is not None:
        network_has_problems = any(v.level in (Level.FAIR, Level.POOR) for v in cues.values())
        advice.extend(system_advice(system, network_has_problems, limits))
    return Assessment(
        recommendation=recommendation,
        level=level,
        summary=summarise(recommendation, cues, measurements),
        cues=cues,
        advice=tuple(advice),
        video_setting=video_setting,
    )


def recommend(cues: Mapping[Cue, CueVerdict], av_failed: bool = False) -> Recommendation:
    """DESIGN §5: phone if voice or timing is poor, audio-only if face or lip sync is poor, else video.

    A video test call that was tried and could not be set up also means audio only: the session's
    own video call would most likely fail the same way.
    """
    if cues[Cue.VOCAL_TONE].level == Level.POOR or cues[Cue.CONVERSATIONAL_TIMING].level == Level.POOR:
        return Recommendation.PHONE
    if cues[Cue.FACIAL_EXPRESSION].level == Level.POOR or cues[Cue.LIP_SYNC].level == Level.POOR or av_failed:
        return Recommendation.AUDIO_ONLY
    if cues[Cue.VOCAL_TONE].level == Level.UNKNOWN or cues[Cue.CONVERSATIONAL_TIMING].level == Level.UNKNOWN:
        return Recommendation.UNKNOWN
    return Recommendation.VIDEO


def summarise(
    recommendation: Recommendation, cues: Mapping[Cue, CueVerdict], measurements: Mapping[str, ProbeResult]
) -> str:
    """The verdict in one sentence."""
    poor = [verdict for verdict in cues.values() if verdict.level == Level.POOR]
    fair = [verdict for verdict in cues.values() if verdict.level == Level.FAIR]
    unknown = [CUE_WORDS[v.cue].name for v in cues.values() if v.level == Level.UNKNOWN and v.note != SPOILED]
    spoiled = [CUE_WORDS[v.cue].name for v in cues.values() if v.level == Level.UNKNOWN and v.note == SPOILED]
    if recommendation == Recommendation.UNKNOWN:
        failed = [f"{name} {result.status.value}" for name, result in measurements.items() if result.status != Status.OK]
        if any(_server_busy(result) for result in measurements.values()):
            failed.insert(0, "the clinic's test server was busy")
        reason = f" ({', '.join(failed)})" if failed else ""
        return f"The connection could not be measured{reason}: no recommendation."
    if recommendation in (Recommendation.PHONE, Recommendation.AUDIO_ONLY):
        causes = "; ".join(f"{CUE_WORDS[v.cue].name} is poor ({_figure(v.deciding)})" for v in poor)
        av = measurements.get("av")
        reach = measurements.get("reach")
        if not poor and isinstance(reach, ReachResult) and reach.udp_status in ("blocked", "unreachable"):
            causes = "this network blocks UDP and no call got through a relay"
        elif not poor and av is not None and av.status != Status.OK:
            causes = f"the video test call could not be set up ({av.status.value})"
        elif not poor:
            causes = "the connection carries too little for video in its slower direction"
        action = "Use the phone" if recommendation == Recommendation.PHONE else "Use audio only"
        return f"{action}: {causes}."
    sentence = "Video should work"
    if fair:
        sentence += ", with some risk: " + "; ".join(f"{CUE_WORDS[v.cue].name} is fair ({_figure(v.deciding)})"
                                                     for v in fair)
    else:
        sentence += " well for every cue measured"
    if unknown:
        sentence += f". Not measured, so not part of this verdict: {_join(unknown)}"
    if spoiled:
        sentence += f". Not judged, because the clinic's test server was busy: {_join(spoiled)}"
    return sentence + "."


NOT_MEASURED_HERE = "not measured in this browser"
"""A metric the client's browser cannot measure (AvResult.not_measured_here), said as such."""


def _judge_cue(cue: Cue, thresholds: tuple[Metric, ...], metrics: Mapping[str, Measured],
               not_measured_here: frozenset[str] = frozenset()) -> CueVerdict:
    verdicts = tuple(_judge_metric(t, metrics.get(t.name), t.name in not_measured_here)
                     for t in thresholds if t.cue == cue)
    if any(_spoiled(verdict) for verdict in verdicts):  # a cue with an unjudged figure has no level
        return CueVerdict(cue, Level.UNKNOWN, verdicts, None, SPOILED)
    measured = [verdict for verdict in verdicts if verdict.level != Level.UNKNOWN]
    if not measured and all(verdict.source == NOT_MEASURED_HERE for verdict in verdicts):
        return CueVerdict(cue, Level.UNKNOWN, verdicts, None, NOT_MEASURED_HERE)
    if not measured:
        probes = sorted({t.probe for t in thresholds if t.cue == cue})
        plural = "probes" if len(probes) > 1 else "probe"
        return CueVerdict(cue, Level.UNKNOWN, verdicts, None, f"not measured (needs the {_join(probes)} {plural})")
    deciding = max(measured, key=lambda verdict: SEVERITY[verdict.level])
    missing = [verdict.metric for verdict in verdicts if verdict.level == Level.UNKNOWN]
    note = f"decided by {deciding.metric}"
    if missing:
        note += f"; not measured: {', '.join(missing)}"
    return CueVerdict(cue, deciding.level, verdicts, deciding, note)


def _judge_metric(metric: Metric, measured: Measured | None, not_measured_here: bool = False) -> MetricVerdict:
    good = metric.describe(metric.good, metric.good_is_strict)
    fair = metric.describe(metric.fair)
    if measured is None:
        return MetricVerdict(metric=metric.name, label=metric.label, cue=metric.cue, level=Level.UNKNOWN, value=None,
                             unit=metric.unit, good=good, fair=fair,
                             source=NOT_MEASURED_HERE if not_measured_here else f"not measured: needs the {metric.probe} probe")
    level = metric.level(measured.value)
    spoiled = measured.server_busy and level != Level.GOOD
    return MetricVerdict(metric=metric.name, label=metric.label, cue=metric.cue,
                         level=Level.UNKNOWN if spoiled else level, value=measured.value, unit=metric.unit,
                         good=good, fair=fair, source=f"{measured.source}; {SPOILED}" if spoiled else measured.source,
                         direction=measured.direction)


def _spoiled(verdict: MetricVerdict) -> bool:
    """A figure that was measured and not judged: the clinic's server was short of CPU."""
    return verdict.level == Level.UNKNOWN and verdict.value is not None


def _server_busy(result: ProbeResult | None) -> bool:
    return bool(getattr(result, "server_busy", False))


def _registry_row(thresholds: tuple[Metric, ...], name: str) -> Metric:
    return next(metric for metric in thresholds if metric.name == name)


def _figure(verdict: MetricVerdict | None) -> str:
    if verdict is None or verdict.value is None:
        return "not measured"
    unit = f" {verdict.unit}" if verdict.unit else ""
    return f"{verdict.label} {verdict.value:.3g}{unit}"


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
