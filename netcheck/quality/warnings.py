"""The words of in-call warnings: which cue is affected, for whose leg, and what the therapist can do.

Written for a therapist in a session: one calm sentence on the clinical effect, one on what to
do. Transmission delay is easily misread as the other person's hesitation or coldness
(Schoenenberg et al. 2014), so the timing warning says so. Pure.
"""

from __future__ import annotations

from netcheck.model import Cue

RAISED = {
    ("facial_expression", "video_fps"): "{Whose} video is choppy{figure}: facial expressions may be missed.",
    ("facial_expression", "freezes_per_min"): "{Whose} video is freezing{figure}: facial expressions may be missed.",
    ("facial_expression", "video_loss_pct"):
        "{Whose} video is losing packets{figure}: the picture may stall and facial expressions be missed.",
    ("facial_expression", "video_height"): "{Whose} picture is blurred{figure}: fine facial expressions may be missed.",
    ("facial_expression", "bandwidth_mbps"): "{Whose} connection is too slow for video{figure}: facial expressions may be missed.",
    ("vocal_tone", "loss_pct"): "{Whose} voice is breaking up{figure}: tone of voice may be missed.",
    ("vocal_tone", "jitter_ms"): "{Whose} voice is uneven{figure}: tone of voice may be distorted.",
    ("vocal_tone", "mos"): "{Whose} voice quality is low{figure}: tone of voice may be missed.",
    ("conversational_timing", "rtt_p95_ms"): "Delay{figure} on {whose_lower} connection: pauses may feel like hesitation.",
    ("lip_sync", "av_skew_ms"): "{Whose} sound and picture are out of step{figure}: lips and voice may not match.",
}
FIGURES = {
    "video_fps": " ({value:.0f} frames per second)",
    "freezes_per_min": " ({value:.1f} freezes a minute)",
    "video_height": " ({value:.0f} px high)",
    "video_loss_pct": " ({value:.0f} % lost)",
    "bandwidth_mbps": " ({value:.1f} Mbit/s)",
    "loss_pct": " ({value:.0f} % of packets lost)",
    "jitter_ms": " (jitter {value:.0f} ms)",
    "mos": " (MOS {value:.1f})",
    "rtt_p95_ms": " {value:.0f} ms",
    "av_skew_ms": " ({value:+.0f} ms)",
}
ADVICE = {
    "facial_expression": "Check in verbally on how things land; put into words what you would otherwise read from the face.",
    "vocal_tone": "Check in verbally on how things land; {they} could move closer to the router or stop uploads.",
    "conversational_timing": "Leave extra time before responding, and do not read pauses as withdrawal.",
    "lip_sync": "Rely on the voice; if the mismatch distracts, switch to audio only.",
}
CLEARED = {
    "facial_expression": "{Whose} video is smooth again.",
    "vocal_tone": "{Whose} voice is clear again.",
    "conversational_timing": "The delay on {whose_lower} connection is back to normal.",
    "lip_sync": "{Whose} sound and picture are in step again.",
}
GENERIC_RAISED = "{Whose} connection is poor for {cue}."


def warning_text(raised: bool, cue: Cue, leg: str, metric: str | None, value: float | None) -> tuple[str, str]:
    """(message, advice) for a warning raised or cleared on `leg`'s connection.

    The watching therapist reads "the client's …" for the client's leg and "your …" for their own.
    """
    whose = "your" if leg == "therapist" else f"the {leg}'s"
    words = {"Whose": whose[0].upper() + whose[1:], "whose_lower": whose,
             "they": "you" if leg == "therapist" else f"the {leg}", "cue": cue.value.replace("_", " ")}
    if not raised:
        return CLEARED[cue.value].format(**words), ""
    template = RAISED.get((cue.value, metric or ""), GENERIC_RAISED)
    figure = FIGURES[metric].format(value=value) if metric in FIGURES and value is not None else ""
    advice = ADVICE[cue.value].format(**words)
    return template.format(figure=figure, **words), advice[0].upper() + advice[1:]
