"""The metric registry: every cue metric as one row of data, and the words for each cue.

A row says what the metric is (name, cue, label, unit), how it is judged (direction, bounds and
where they come from), where its value comes from (the probe and its fields), and how people read
it (advice for a client, warning for a therapist, display format). `assess`, advice, warnings,
the terminal and watch renderers, notifications and the dashboard generator all read these rows;
adding a metric is one row here plus its measurement in `assess.measured_metrics`.

Per-clinic overrides change a row's `good` and `fair` (config `[thresholds.<name>]`,
thresholds.apply_overrides). Sources and arithmetic: docs/quality-model.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from netcheck.model import Cue, Level

Direction = Literal["higher_is_better", "lower_is_better", "within"]
Bound = float | tuple[float, float]


@dataclass(frozen=True)
class Metric:
    """One row of the cue table."""

    name: str
    cue: Cue
    label: str
    """What a person calls it in the check's table, e.g. "delay (RTT p95)"."""
    short_label: str
    """A word or two for narrow views (watch, the browser panel), e.g. "delay"."""
    unit: str
    direction: Direction
    good: Bound
    fair: Bound
    source: str
    """Where the bounds come from (docs/quality-model.md has the arithmetic)."""
    probe: str
    """The probe that measures it, as people call it ("UDP", "A/V", "throughput")."""
    measured_from: str
    """The probe fields the value is taken from."""
    advice: str
    """One line for the client when the metric is fair or poor; format keys: value, and those of
    advice.AdviceContext (direction, because, remedy, voice, phone, audio)."""
    warning: str
    """The therapist's in-call warning; format keys: Whose, whose_lower, figure."""
    warning_figure: str
    """The figure inside the warning, e.g. " ({value:.0f} % of packets lost)"."""
    value_format: str = "{value:.3g}"
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

    def format_value(self, value: float) -> str:
        """The value with its unit, as the tables show it: '29.8 fps', '2.1 %', '+35 ms'."""
        unit = f" {self.unit}" if self.unit else ""
        return self.value_format.format(value=value) + unit


@dataclass(frozen=True)
class CueWords:
    """How people call a cue, and what a therapist can do when it suffers."""

    name: str
    """"facial expression": in sentences."""
    title: str
    """"Facial expression": as a table row's heading."""
    short: str
    """"expression": in narrow views."""
    therapist_advice: str
    """The advice under a raised warning; format key: they."""
    cleared: str
    """The line when the warning clears; format keys: Whose, whose_lower."""


CUE_WORDS: dict[Cue, CueWords] = {
    Cue.FACIAL_EXPRESSION: CueWords(
        "facial expression", "Facial expression", "expression",
        "Check in verbally on how things land; put into words what you would otherwise read from the face.",
        "{Whose} video is smooth again."),
    Cue.VOCAL_TONE: CueWords(
        "vocal tone", "Vocal tone", "tone of voice",
        "Check in verbally on how things land; {they} could move closer to the router or stop uploads.",
        "{Whose} voice is clear again."),
    Cue.CONVERSATIONAL_TIMING: CueWords(
        "conversational timing", "Conversational timing", "timing",
        "Leave extra time before responding, and do not read pauses as withdrawal.",
        "The delay on {whose_lower} connection is back to normal."),
    Cue.LIP_SYNC: CueWords(
        "lip sync", "Lip sync", "lip sync",
        "Rely on the voice; if the mismatch distracts, switch to audio only.",
        "{Whose} sound and picture are in step again."),
}

METRICS: tuple[Metric, ...] = (
    Metric("video_fps", Cue.FACIAL_EXPRESSION, "received video frame rate", "frame rate", "fps", "higher_is_better",
           24, 15, "micro-expressions last 1/25–1/5 s (Shen et al. 2012); telehealth floor 30 fps VGA",
           "A/V", "av.upstream.video_fps, av.downstream.video_fps (the worse)",
           "Video {direction} runs at {value:.0f} fps because {because}: fleeting facial expressions will be "
           "missed — {remedy}{audio}.",
           "{Whose} video is choppy{figure}: facial expressions may be missed.", " ({value:.0f} frames per second)",
           value_format="{value:.1f}"),
    Metric("video_height", Cue.FACIAL_EXPRESSION, "received video height", "height", "px", "higher_is_better",
           720, 360, "720p ≈ 1.2 Mbps (Zoom, Azure Communication Services); judged only where the sender adapts "
           "its resolution to the path (a browser does, aiortc does not)",
           "A/V", "av.upstream.video_height, av.downstream.video_height (the worse; adapting senders only)",
           "Video {direction} is only {value:.0f} px high because {because}: the face will look blurry — "
           "{remedy}{audio}.",
           "{Whose} picture is blurred{figure}: fine facial expressions may be missed.", " ({value:.0f} px high)",
           value_format="{value:.0f}"),
    Metric("frozen_pct", Cue.FACIAL_EXPRESSION, "time the video was frozen", "frozen", "%", "lower_is_better",
           1, 5, "share of the time frozen, as Agora's frozenRate and WebRTC's totalFreezesDuration (freeze: a gap "
           "≥ max(3 × mean frame interval, mean + 150 ms)) define it; ≤ 1 % smooth, > 5 % (3 s a minute) loses "
           "one expression in twenty",
           "A/V", "av.upstream.video_frozen_ms, av.downstream.video_frozen_ms over av.duration_s (the worse)",
           "Video {direction} was frozen {value:.0f} % of the time because {because}: expressions get lost in the "
           "freezes — {remedy}{audio}.",
           "{Whose} video is freezing{figure}: facial expressions may be missed.", " (frozen {value:.0f} % of the time)",
           value_format="{value:.1f}"),
    Metric("video_loss_pct", Cue.FACIAL_EXPRESSION, "video packet loss (before repair)", "video loss", "%",
           "lower_is_better", 1, 5, "Vidyo network guidelines: video loss < 1 % green, > 5 % red; beyond what "
           "NACK/RTX repairs in time the picture stalls and blurs",
           "A/V", "av.upstream.video_loss_pct, av.downstream.video_loss_pct (the worse)",
           "Video {direction} loses {value:.1f} % of its packets: the picture stalls and blurs while they are "
           "repaired — move closer to the router or plug in a cable{audio}.",
           "{Whose} video is losing packets{figure}: the picture may stall and facial expressions be missed.",
           " ({value:.0f} % lost)", value_format="{value:.1f}", good_is_strict=True),
    Metric("bandwidth_mbps", Cue.FACIAL_EXPRESSION, "bandwidth (worse direction)", "bandwidth", "Mbps",
           "higher_is_better", 1.5, 0.5, "720p 1.2 Mbps; 360p 0.5 Mbps; RANZCP 384 kbps minimum",
           "throughput", "throughput.download_mbps, throughput.upload_mbps (the lower)",
           "Bandwidth {value:.1f} Mbps: too little for a clear face — stop other uploads and streams or move to "
           "the router{audio}.",
           "{Whose} connection is too slow for video{figure}: facial expressions may be missed.",
           " ({value:.1f} Mbit/s)", value_format="{value:.1f}"),
    Metric("loss_one_way_pct", Cue.VOCAL_TONE, "packet loss, one way", "loss", "%",
           "lower_is_better", 1, 3, "Teams < 1 %; G.107 E-model; a voice travels one way, so the worse "
           "direction's one-way loss is judged",
           "UDP", "udp.loss_up_pct, udp.loss_down_pct (the worse); without them 1 − √(1 − udp.loss_pct)",
           "{voice} loses {value:.1f} % of its packets: the voice breaks up and its tone gets lost — move closer "
           "to the router or plug in a cable{phone}.",
           "{Whose} voice is breaking up{figure}: tone of voice may be missed.", " ({value:.0f} % of packets lost)",
           value_format="{value:.1f}", good_is_strict=True),
    Metric("jitter_one_way_ms", Cue.VOCAL_TONE, "jitter, one way", "jitter", "ms",
           "lower_is_better", 20, 40, "Teams < 30 ms; Cloudflare AIM bands; one-way IPDV of the worse direction",
           "UDP", "udp.jitter_up_ms, udp.jitter_down_ms (the worse); without them udp.jitter_ms (round trip)",
           "{voice} arrives unevenly (jitter {value:.0f} ms): speech may sound choppy — pause uploads, downloads "
           "and streaming on this network, or move closer to the router{phone}.",
           "{Whose} voice is uneven{figure}: tone of voice may be distorted.", " (jitter {value:.0f} ms)",
           value_format="{value:.1f}"),
    Metric("mos", Cue.VOCAL_TONE, "voice quality (E-model MOS)", "MOS", "", "higher_is_better", 4.0, 3.6,
           "ITU-T G.107 user-satisfaction bands, fed with the worse direction's one-way figures",
           "UDP", "G.107 E-model of udp.rtt_mean_ms / 2, the one-way jitter and the one-way loss",
           "Expected voice quality {value:.1f} of 4.5: the voice will sound degraded — fix the loss, jitter or "
           "delay above{phone}.",
           "{Whose} voice quality is low{figure}: tone of voice may be missed.", " (MOS {value:.1f})",
           value_format="{value:.2f}"),
    Metric("rtt_p95_ms", Cue.CONVERSATIONAL_TIMING, "delay (RTT p95)", "delay", "ms", "lower_is_better", 140, 240,
           "G.114: ≤ 150 ms mouth-to-ear one way; a response gap past ≈ 600 ms reads as hesitation (Roberts et al. "
           "2006; Kendrick & Torreira 2015) after a natural gap of ≈ 200 ms (Stivers et al. 2009); 80 ms endpoint "
           "budget each way: RTT ≤ 2 × (150 − 80) good, ≤ 2 × (200 − 80) fair (docs/quality-model.md)",
           "UDP", "throughput.loaded_rtt_*_ms (the worse) when measured, else udp.rtt_p95_ms",
           "Delay {value:.0f} ms: pauses may feel like hesitation or coldness — leave extra time before "
           "responding{phone}.",
           "Delay{figure} on {whose_lower} connection: pauses may feel like hesitation.", " {value:.0f} ms",
           value_format="{value:.0f}"),
    Metric("av_skew_ms", Cue.LIP_SYNC, "audio/video skew (+ = audio leads)", "skew", "ms", "within",
           (-125, 45), (-185, 90), "ITU-R BT.1359 detectability / acceptability",
           "A/V", "av.av_skew_ms (the direction with the larger |skew|)",
           "Lip sync off by {value:+.0f} ms: voice and lips drift apart — restart the call app{audio}.",
           "{Whose} sound and picture are out of step{figure}: lips and voice may not match.", " ({value:+.0f} ms)",
           value_format="{value:+.0f}"),
)

CALL_ONLY_METRICS: tuple[Metric, ...] = (
    Metric("audio_concealed_pct", Cue.VOCAL_TONE, "audio the receiver had to conceal", "concealed", "%",
           "lower_is_better", 1, 3, "W3C webrtc-stats concealedSamples / totalSamplesReceived (DTX silence "
           "excluded): the lost or late audio as the listener hears it, judged with the bands of one-way loss "
           "(Teams < 1 %; G.107), which it measures after repair",
           "call", "call.downstream.audio_concealed_pct (the call's own receiver)",
           "{voice} had {value:.1f} % of its sound filled in by the receiver: words and tone get smeared — move "
           "closer to the router or plug in a cable{phone}.",
           "{Whose} voice is breaking up{figure}: tone of voice may be missed.", " ({value:.0f} % of the sound filled in)",
           value_format="{value:.1f}"),
)
"""Rows only the session's own call measures (issue 25): judged on a call leg (`assess` with
`METRICS + CALL_ONLY_METRICS`), never listed by a probe's check as "not measured"."""

METRIC_BY_NAME: dict[str, Metric] = {metric.name: metric for metric in (*METRICS, *CALL_ONLY_METRICS)}
RENAMED_METRICS: dict[str, str] = {
    "loss_pct": "loss_one_way_pct",
    "jitter_ms": "jitter_one_way_ms",
    "freezes_per_min": "frozen_pct",
}
"""Cue metrics of earlier versions, for a config that still names them. Stored points keep the old
names with their old meaning; the new metrics have new names."""
