"""The offer/answer contract shared by the client probe and the server's media peer."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from netcheck.av.markers import VideoFormat
from netcheck.errors import UsageError

MIN_WIDTH, MIN_HEIGHT = 160, 90
MAX_WIDTH, MAX_HEIGHT, MAX_FPS = 1920, 1080, 60
MAX_AUDIO_OFFSET_MS = 1000.0
_VIDEO = re.compile(r"^(\d{2,4})x(\d{2,4})@(\d{1,2})$")


def parse_video_format(text: str) -> VideoFormat:
    """'640x360@30' → VideoFormat; even sizes (YUV 4:2:0), within 1920x1080@60."""
    match = _VIDEO.match(text.strip())
    if not match:
        raise UsageError(f"bad video format {text!r}: use WIDTHxHEIGHT@FPS, e.g. 640x360@30")
    width, height, fps = (int(group) for group in match.groups())
    if not (MIN_WIDTH <= width <= MAX_WIDTH and MIN_HEIGHT <= height <= MAX_HEIGHT and 1 <= fps <= MAX_FPS):
        raise UsageError(f"bad video format {text!r}: from {MIN_WIDTH}x{MIN_HEIGHT} to {MAX_WIDTH}x{MAX_HEIGHT}@{MAX_FPS}")
    if width % 2 or height % 2:
        raise UsageError(f"bad video format {text!r}: width and height must be even")
    return VideoFormat(width, height, fps)


def check_audio_offset_ms(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) > MAX_AUDIO_OFFSET_MS:
        raise UsageError(f"audio offset must be a number of ms within ±{MAX_AUDIO_OFFSET_MS:g}")
    return float(value)


def parse_offer_request(body: Any) -> tuple[str, VideoFormat, float]:
    """Validate a POST /v1/av/offer body → (sdp, video format, audio offset ms). UsageError if bad."""
    if not isinstance(body, Mapping):
        raise UsageError("body must be a JSON object")
    sdp, kind = body.get("sdp"), body.get("type")
    if kind != "offer" or not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise UsageError("expected {\"type\": \"offer\", \"sdp\": \"v=0…\"}")
    if "m=audio" not in sdp or "m=video" not in sdp:
        raise UsageError("the offer must have an audio and a video section")
    video = parse_video_format(str(body.get("video", "640x360@30")))
    return sdp, video, check_audio_offset_ms(body.get("audio_offset_ms", 0.0))
