"""Turning a direction's recording and RTP figures into the probe's per-direction fields."""

from __future__ import annotations

import statistics
from typing import Any

from netcheck.av.analysis import Recording, marker_skews_ms, summarise_video
from netcheck.av.markers import VideoFormat
from netcheck.av.peer import InboundFigures, OutboundFigures

AUDIO_PIPELINE_MS = 84.4
"""aiortc's audio path before a frame reaches the application (jitter-buffer prefetch, decode)."""
VIDEO_MS_PER_MEGAPIXEL = 6.6
"""Encode + decode time of the video path, per megapixel of frame."""


def pipeline_offset_ms(video: VideoFormat) -> float:
    """d_video − d_audio of the probe's own pipeline on a perfect path, subtracted from every skew.

    aiortc's video jitter buffer releases a frame when the next one starts (one frame interval),
    encoding and decoding grow with the frame size (VIDEO_MS_PER_MEGAPIXEL), and its audio path
    holds AUDIO_PIPELINE_MS. Both constants are the least-squares fit printed by
    `python benchmarks/av_calibration.py --runs 5` on loopback; BENCHMARKS.md has that fit, how far
    it moves between runs, and its check on a video format and audio offsets it was not fitted on.
    This module is the one source of the constants; docs/av-probe.md quotes them.
    """
    return 1000.0 / video.fps + VIDEO_MS_PER_MEGAPIXEL * video.width * video.height / 1e6 - AUDIO_PIPELINE_MS

RECEIVED_FIELDS = ("video_fps", "video_width", "video_height", "video_freezes", "video_frozen_ms",
                   "video_loss_pct", "audio_loss_pct", "audio_jitter_ms", "av_skew_ms")
SENT_FIELDS = ("video_bitrate_kbps", "audio_bitrate_kbps", "rtt_ms")


def received_fields(
    recording: Recording, inbound: dict[str, InboundFigures], video: VideoFormat, window_end_s: float
) -> dict[str, Any]:
    """What the receiving end of one direction can tell: frames, freezes, loss, jitter, skew."""
    summary = summarise_video(recording.video_arrivals_s, window_end_s)
    skews = marker_skews_ms(recording, video)
    video_in = inbound.get("video", InboundFigures(None, None))
    audio_in = inbound.get("audio", InboundFigures(None, None))
    return {
        "video_fps": _round(summary.fps),
        "video_width": recording.video_width or None,
        "video_height": recording.video_height or None,
        "video_freezes": summary.freezes,
        "video_frozen_ms": _round(summary.frozen_ms),
        "video_loss_pct": _round(video_in.loss_pct),
        "audio_loss_pct": _round(audio_in.loss_pct),
        "audio_jitter_ms": _round(audio_in.jitter_ms),
        "av_skew_ms": _round(statistics.median(skews) - pipeline_offset_ms(video)) if skews else None,
    }


def sent_fields(outbound: dict[str, OutboundFigures]) -> dict[str, Any]:
    """What the sending end of one direction can tell: bitrates and the RTCP round-trip time."""
    video_out = outbound.get("video", OutboundFigures(None, None))
    audio_out = outbound.get("audio", OutboundFigures(None, None))
    rtts = [rtt for rtt in (video_out.rtt_ms, audio_out.rtt_ms) if rtt is not None]
    return {
        "video_bitrate_kbps": _round(video_out.bitrate_kbps),
        "audio_bitrate_kbps": _round(audio_out.bitrate_kbps),
        "rtt_ms": _round(min(rtts)) if rtts else None,
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
