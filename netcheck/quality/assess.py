"""assess(): per-cue levels, a recommendation and advice from probe results. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from netcheck.model import Assessment, Cue, CueVerdict, Level, MetricVerdict, ProbeResult, Recommendation, Status
from netcheck.probes.av import AvDirection, AvResult
from netcheck.probes.reach import ReachResult
from netcheck.probes.system import SystemResult
from netcheck.probes.throughput import ThroughputResult
from netcheck.probes.udp import UdpResult
from netcheck.quality import emodel
from netcheck.quality.advice import (
    bufferbloat_advice,
    metric_advice,
    path_advice,
    probe_failure_advice,
    reach_advice,
    system_advice,
    video_cause,
    video_setting_advice,
)
from netcheck.quality.thresholds import DEFAULT_THRESHOLDS, SystemLimits, Threshold, video_setting_for

SEVERITY = {Level.GOOD: 0, Level.FAIR: 1, Level.POOR: 2}
CUE_NAMES = {
    Cue.FACIAL_EXPRESSION: "facial expression",
    Cue.VOCAL_TONE: "vocal tone",
    Cue.CONVERSATIONAL_TIMING: "conversational timing",
    Cue.LIP_SYNC: "lip sync",
}
PROBE_FOR_METRIC = {
    "video_fps": "A/V",
    "video_height": "A/V",
    "freezes_per_min": "A/V",
    "video_loss_pct": "A/V",
    "av_skew_ms": "A/V",
    "bandwidth_mbps": "throughput",
    "loss_pct": "UDP",
    "jitter_ms": "UDP",
    "mos": "UDP",
    "rtt_p95_ms": "UDP",
}


def measured_metrics(measurements: Mapping[str, ProbeResult]) -> dict[str, tuple[float, str]]:
    """Cue metric name → (value, where it came from), for every metric a successful probe gave."""
    metrics: dict[str, tuple[float, str]] = {}
    udp = measurements.get("udp")
    if isinstance(udp, UdpResult) and udp.status == Status.OK and udp.rtt_mean_ms is not None:
        jitter_ms = udp.jitter_ms or 0.0
        loss_pct = udp.loss_pct or 0.0
        metrics["loss_pct"] = (loss_pct, "udp.loss_pct")
        metrics["jitter_ms"] = (jitter_ms, "udp.jitter_ms")
        metrics["rtt_p95_ms"] = (udp.rtt_p95_ms or udp.rtt_mean_ms, "udp.rtt_p95_ms")
        metrics["mos"] = (round(emodel.mos(udp.rtt_mean_ms, jitter_ms, loss_pct), 2),
                          "G.107 E-model of udp.rtt_mean_ms, udp.jitter_ms, udp.loss_pct")
    av = measurements.get("av")
    if isinstance(av, AvResult) and av.status == Status.OK and av.upstream and av.downstream:
        directions = {"upstream": av.upstream, "downstream": av.downstream}
        # in a finished call a direction without frames got nothing through: 0 fps, 0 px
        fps, fps_from = min((d.video_fps or 0.0, name) for name, d in directions.items())
        metrics["video_fps"] = (fps, f"av.{fps_from}.video_fps")
        height, height_from = min((d.video_height or 0, name) for name, d in directions.items())
        metrics["video_height"] = (float(height), f"av.{height_from}.video_height")
        minutes = (av.duration_s or 0.0) / 60.0
        if minutes > 0:
            freezes, freezes_from = max(((d.video_freezes or 0) / minutes, name) for name, d in directions.items())
            metrics["freezes_per_min"] = (round(freezes, 2), f"av.{freezes_from}.video_freezes")
        losses = [(d.video_loss_pct, name) for name, d in directions.items() if d.video_loss_pct is not None]
        if losses:  # a short probe may see no freeze yet on a path whose loss will freeze a session
            video_loss, video_loss_from = max(losses)
            metrics["video_loss_pct"] = (video_loss, f"av.{video_loss_from}.video_loss_pct")
        if av.av_skew_ms is not None:
            metrics["av_skew_ms"] = (av.av_skew_ms, "av.av_skew_ms (the worse direction)")
        if "loss_pct" not in metrics:
            metrics.update(voice_metrics_from_call(av.upstream, av.downstream))
    throughput = measurements.get("throughput")
    if isinstance(throughput, ThroughputResult) and throughput.status == Status.OK:
        directions = [(value, name) for value, name in ((throughput.download_mbps, "download_mbps"),
                                                          (throughput.upload_mbps, "upload_mbps")) if value is not None]
        if directions:
            bandwidth, bandwidth_from = min(directions)
            metrics["bandwidth_mbps"] = (bandwidth, f"throughput.{bandwidth_from}")
        loaded = [(value, name) for value, name in ((throughput.loaded_rtt_down_ms, "loaded_rtt_down_ms"),
                                                      (throughput.loaded_rtt_up_ms, "loaded_rtt_up_ms")) if value is not None]
        if loaded:  # DESIGN §5: timing is judged under load when load was measured
            rtt, rtt_from = max(loaded)
            metrics["rtt_p95_ms"] = (rtt, f"throughput.{rtt_from} (RTT p95 under load)")
    return metrics


def voice_metrics_from_call(upstream: AvDirection, downstream: AvDirection) -> dict[str, tuple[float, str]]:
    """Voice and timing from the A/V call's audio when the UDP probe got nothing through.

    That happens when a firewall blocks UDP and the call went through TURN over TCP: the call's
    own audio is then the best evidence of what a voice will sound like. Its jitter is RFC 3550's
    and its RTT RTCP's smoothed one, not IPDV and p95; the sources say so.
    """
    metrics: dict[str, tuple[float, str]] = {}
    directions = {"upstream": upstream, "downstream": downstream}
    losses = [(d.audio_loss_pct, name) for name, d in directions.items() if d.audio_loss_pct is not None]
    jitters = [(d.audio_jitter_ms, name) for name, d in directions.items() if d.audio_jitter_ms is not None]
    rtts = [(d.rtt_ms, name) for name, d in directions.items() if d.rtt_ms is not None]
    if not (losses and jitters and rtts):
        return metrics
    loss, loss_from = max(losses)
    jitter, jitter_from = max(jitters)
    rtt, rtt_from = max(rtts)
    metrics["loss_pct"] = (loss, f"av.{loss_from}.audio_loss_pct (UDP probe got no answer)")
    metrics["jitter_ms"] = (jitter, f"av.{jitter_from}.audio_jitter_ms, RFC 3550 (UDP probe got no answer)")
    metrics["rtt_p95_ms"] = (rtt, f"av.{rtt_from}.rtt_ms, RTCP (UDP probe got no answer)")
    metrics["mos"] = (round(emodel.mos(rtt, jitter, loss), 2), "G.107 E-model of the call's audio figures")
    return metrics


def assess(
    measurements: Mapping[str, ProbeResult],
    thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS,
    limits: SystemLimits = SystemLimits(),
) -> Assessment:
    metrics = measured_metrics(measurements)
    cues = {cue: _judge_cue(cue, thresholds, metrics) for cue in Cue}
    av = measurements.get("av")
    av_failed = av is not None and av.status != Status.OK
    reach = measurements.get("reach")
    # UDP blocked and a video call that was tried and failed: nothing real-time gets through
    no_realtime_path = (isinstance(reach, ReachResult) and reach.udp_status in ("blocked", "unreachable")
                        and isinstance(av, AvResult) and av.status != Status.OK)
    recommendation = Recommendation.PHONE if no_realtime_path else recommend(cues, av_failed)
    measured_levels = [verdict.level for verdict in cues.values() if verdict.level != Level.UNKNOWN]
    level = max(measured_levels, key=SEVERITY.__getitem__) if measured_levels else Level.UNKNOWN

    system = measurements.get("system")
    system = system if isinstance(system, SystemResult) and system.status == Status.OK else None
    advice = []
    for verdict in cues.values():
        for metric in verdict.metrics:
            cause = None
            if isinstance(av, AvResult) and metric.source.startswith(("av.upstream", "av.downstream")):
                direction_name = metric.source.split(".")[1]
                cause = video_cause(direction_name, getattr(av, direction_name), system, limits)
            if line := metric_advice(metric, cause):
                advice.append(line)
    advice.extend(line for name, result in measurements.items()
                  if result.status != Status.OK and (line := probe_failure_advice(name, result.status.value)))
    if isinstance(av, AvResult) and av.status == Status.OK and (line := path_advice(av)):
        advice.append(line)
    reach = measurements.get("reach")
    if isinstance(reach, ReachResult):
        call_ok = isinstance(av, AvResult) and av.status == Status.OK
        lines = reach_advice(reach, call_ok)
        if lines and any(line.startswith("Your network blocks UDP") for line in lines):
            advice = [line for line in advice if not line.startswith("No answer on the server's UDP port")]
        advice.extend(lines)
    throughput = measurements.get("throughput")
    video_setting = None
    if isinstance(throughput, ThroughputResult) and throughput.status == Status.OK:
        if line := bufferbloat_advice(throughput, limits):
            advice.append(line)
        if "bandwidth_mbps" in metrics:
            video_setting = video_setting_for(metrics["bandwidth_mbps"][0])
            if line := video_setting_advice(video_setting, metrics["bandwidth_mbps"][0]):
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
    unknown = [CUE_NAMES[verdict.cue] for verdict in cues.values() if verdict.level == Level.UNKNOWN]
    if recommendation == Recommendation.UNKNOWN:
        failed = [f"{name} {result.status.value}" for name, result in measurements.items() if result.status != Status.OK]
        reason = f" ({', '.join(failed)})" if failed else ""
        return f"The connection could not be measured{reason}: no recommendation."
    if recommendation in (Recommendation.PHONE, Recommendation.AUDIO_ONLY):
        causes = "; ".join(f"{CUE_NAMES[v.cue]} is poor ({_figure(v.deciding)})" for v in poor)
        av = measurements.get("av")
        reach = measurements.get("reach")
        if not poor and isinstance(reach, ReachResult) and reach.udp_status in ("blocked", "unreachable"):
            causes = "this network blocks UDP and no call got through a relay"
        elif not poor and av is not None and av.status != Status.OK:
            causes = f"the video test call could not be set up ({av.status.value})"
        action = "Use the phone" if recommendation == Recommendation.PHONE else "Use audio only"
        return f"{action}: {causes}."
    sentence = "Video should work"
    if fair:
        sentence += ", with some risk: " + "; ".join(f"{CUE_NAMES[v.cue]} is fair ({_figure(v.deciding)})" for v in fair)
    else:
        sentence += " well for every cue measured"
    if unknown:
        sentence += f". Not measured, so not part of this verdict: {_join(unknown)}"
    return sentence + "."


def _judge_cue(cue: Cue, thresholds: tuple[Threshold, ...], metrics: Mapping[str, tuple[float, str]]) -> CueVerdict:
    verdicts = tuple(_judge_metric(t, metrics.get(t.metric)) for t in thresholds if t.cue == cue)
    measured = [verdict for verdict in verdicts if verdict.level != Level.UNKNOWN]
    if not measured:
        probes = sorted({PROBE_FOR_METRIC.get(verdict.metric, "another") for verdict in verdicts})
        plural = "probes" if len(probes) > 1 else "probe"
        return CueVerdict(cue, Level.UNKNOWN, verdicts, None, f"not measured (needs the {_join(probes)} {plural})")
    deciding = max(measured, key=lambda verdict: SEVERITY[verdict.level])
    missing = [verdict.metric for verdict in verdicts if verdict.level == Level.UNKNOWN]
    note = f"decided by {deciding.metric}"
    if missing:
        note += f"; not measured: {', '.join(missing)}"
    return CueVerdict(cue, deciding.level, verdicts, deciding, note)


def _judge_metric(threshold: Threshold, measured: tuple[float, str] | None) -> MetricVerdict:
    good = threshold.describe(threshold.good, threshold.good_is_strict)
    fair = threshold.describe(threshold.fair)
    if measured is None:
        source = f"not measured: needs the {PROBE_FOR_METRIC.get(threshold.metric, 'another')} probe"
        return MetricVerdict(threshold.metric, threshold.label, threshold.cue, Level.UNKNOWN, None, threshold.unit, good, fair, source)
    value, source = measured
    return MetricVerdict(threshold.metric, threshold.label, threshold.cue, threshold.level(value), value, threshold.unit,
                         good, fair, source)


def _figure(verdict: MetricVerdict | None) -> str:
    if verdict is None or verdict.value is None:
        return "not measured"
    unit = f" {verdict.unit}" if verdict.unit else ""
    return f"{verdict.label} {verdict.value:.3g}{unit}"


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
