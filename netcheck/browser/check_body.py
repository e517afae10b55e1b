"""The body of `POST /v1/checks` (docs/browser-check.md), validated field by field. Pure.

The body comes from a page anyone can open, so every field is checked before anything is done
with it: its type (a bool is not a number, a float is not an integer unless it is whole), its
range, an array's length, and no field that the contract does not name. NaN and infinity are
refused whether they come as JSON literals or as overflowing numbers. The first problem found is
reported as one sentence naming the field (`downstream.video_fps: …`), and nothing is stored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netcheck.parse import strict_json

MAX_BODY_BYTES = 256 * 1024
MAX_SENT = 1000
"""The voice stream: 50 a second for up to 20 s."""
MAX_REPLIES = 4000
HEX_SESSION = re.compile(r"^[0-9a-f]{32,64}$")
HEX_TEST_ID = re.compile(r"^[0-9a-f]{16,64}$")
"""As the throughput endpoints accept them (server/throughput.py TEST_ID)."""
CLOCK_MAX_MS = 1e12
"""performance.now() and the server's monotonic clock in ms: 30 years of uptime."""


class BodyError(ValueError):
    """The body is not the contract's: `field` names where (dotted), the message says what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field


@dataclass(frozen=True)
class Number:
    low: float
    high: float
    integer: bool = False
    nullable: bool = True

    def check(self, value: Any, where: str) -> float | int | None:
        if value is None:
            if self.nullable:
                return None
            raise BodyError(where, "must not be null")
        kind = "an integer" if self.integer else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BodyError(where, f"must be {kind}, not {_json_type(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise BodyError(where, "must be a finite number")
        if self.integer and isinstance(value, float):
            if not value.is_integer():
                raise BodyError(where, "must be an integer")
            value = int(value)
        if not self.low <= value <= self.high:
            raise BodyError(where, f"{value!r} is outside {self.low:g}..{self.high:g}")
        return value if self.integer else float(value)


@dataclass(frozen=True)
class Choice:
    values: tuple[str, ...]
    nullable: bool = True

    def check(self, value: Any, where: str) -> str | None:
        if value is None and self.nullable:
            return None
        if not isinstance(value, str) or value not in self.values:
            raise BodyError(where, f"must be one of {', '.join(self.values)}{' or null' if self.nullable else ''}")
        return value


@dataclass(frozen=True)
class Flag:
    nullable: bool = True

    def check(self, value: Any, where: str) -> bool | None:
        if value is None and self.nullable:
            return None
        if not isinstance(value, bool):
            raise BodyError(where, f"must be true or false, not {_json_type(value)}")
        return value


@dataclass(frozen=True)
class Pattern:
    """A string that matches `pattern` (an id, a hex digest): nothing a client sends is kept unchecked."""

    pattern: re.Pattern[str]
    description: str
    nullable: bool = True

    def check(self, value: Any, where: str) -> str | None:
        if value is None and self.nullable:
            return None
        if not isinstance(value, str) or not self.pattern.match(value):
            raise BodyError(where, f"must be {self.description}{' or null' if self.nullable else ''}")
        return value


@dataclass(frozen=True)
class NumberList:
    item: Number
    max_items: int

    def check(self, value: Any, where: str) -> list[float]:
        items = _bounded_list(value, self.max_items, where)
        return [self.item.check(item, f"{where}[{index}]") for index, item in enumerate(items)]  # type: ignore[misc]


@dataclass(frozen=True)
class ChoiceList:
    item: Choice
    max_items: int

    def check(self, value: Any, where: str) -> list[str]:
        items = [] if value is None else _bounded_list(value, self.max_items, where)
        return sorted({self.item.check(item, f"{where}[{index}]") for index, item in enumerate(items)})  # type: ignore[type-var]


@dataclass(frozen=True)
class ReplyList:
    """[[seq, client_recv_ms, server_recv_ms, server_send_ms], …]."""

    max_items: int

    def check(self, value: Any, where: str) -> list[tuple[int, float, float, float]]:
        seq, clock = Number(0, 65535, integer=True, nullable=False), Number(-CLOCK_MAX_MS, CLOCK_MAX_MS, nullable=False)
        replies = []
        for index, reply in enumerate(_bounded_list(value, self.max_items, where)):
            at = f"{where}[{index}]"
            if not isinstance(reply, list) or len(reply) != 4:
                raise BodyError(at, "must be [seq, client_recv_ms, server_recv_ms, server_send_ms]")
            replies.append((seq.check(reply[0], f"{at}[0]"), *(clock.check(item, f"{at}[{i}]")
                                                               for i, item in enumerate(reply[1:], 1))))
        return replies  # type: ignore[return-value]


@dataclass(frozen=True)
class Obj:
    fields: Mapping[str, Any]
    nullable: bool = True
    required: tuple[str, ...] = ()

    def check(self, value: Any, where: str) -> dict[str, Any] | None:
        if value is None and self.nullable:
            return None
        if not isinstance(value, dict):
            raise BodyError(where, f"must be an object, not {_json_type(value)}")
        for name in value:
            if name not in self.fields:
                raise BodyError(_join(where, str(name)[:64]), "unknown field")
        for name in self.required:
            if name not in value:
                raise BodyError(_join(where, name), "missing")
        return {name: spec.check(value.get(name), _join(where, name)) for name, spec in self.fields.items()}


PERCENT = Number(0, 100)
MS = Number(0, 600_000)
KBPS = Number(0, 10_000_000)
MBPS = Number(0, 100_000)
CAMERA = ("ok", "denied", "busy", "missing", "black", "frozen", "error", "not_asked")
MICROPHONE = ("ok", "denied", "busy", "missing", "silent", "clipping", "error", "not_asked", "not_measured")
"""`not_measured`: the microphone opened, but its level could not be read (the browser's sound never started)."""
SPEAKERS = ("heard", "not_heard", "not_asked")
UNSUPPORTED = ("webrtc", "getusermedia")
"""What the page's browser lacks altogether (main.js `unsupportedFeatures`)."""
BROWSER_GAP_METRICS = {"no_frame_callback": "av_skew_ms", "no_audio_worklet": "av_skew_ms",
                       "lip_sync_not_calibrated": "av_skew_ms", "sound_not_started": "av_skew_ms"}
"""What the page could not measure in its browser (call.js `missing()`) → the metric it leaves unmeasured."""
BROWSER_GAPS = tuple(BROWSER_GAP_METRICS)

BODY = Obj({
    "av_session_id": Pattern(HEX_SESSION, "the hex session id of the call (from POST /v1/av/offer)"),
    "audio_offset_ms": Number(-1000, 1000),
    "devices": Obj({
        "secure_context": Flag(nullable=False),
        "camera": Choice(CAMERA, nullable=False),
        "camera_width": Number(0, 7680, integer=True),
        "camera_height": Number(0, 4320, integer=True),
        "microphone": Choice(MICROPHONE, nullable=False),
        "microphone_level_db": Number(-200, 20),
        "speakers": Choice(SPEAKERS, nullable=False),
        "output_device_choice": Flag(),
    }, nullable=False, required=("secure_context", "camera", "microphone", "speakers")),
    "downstream": Obj({
        "duration_s": Number(0, 120),
        "video_fps": Number(0, 240),
        "video_width": Number(0, 7680, integer=True),
        "video_height": Number(0, 4320, integer=True),
        "video_freezes": Number(0, 100_000, integer=True),
        "video_frozen_ms": MS,
        "video_loss_pct": PERCENT,
        "audio_loss_pct": PERCENT,
        "audio_jitter_ms": Number(0, 60_000),
        "jitter_buffer_ms": Number(0, 60_000),
        "concealed_pct": PERCENT,
        "video_bitrate_kbps": KBPS,
        "audio_bitrate_kbps": KBPS,
        "rtt_ms": Number(0, 60_000),
        "av_skew_ms": Number(-10_000, 10_000),
    }),
    "voice": Obj({
        "interval_ms": Number(5, 1000, nullable=False),
        "sent_ms": NumberList(Number(-CLOCK_MAX_MS, CLOCK_MAX_MS, nullable=False), MAX_SENT),
        "replies": ReplyList(MAX_REPLIES),
        "server_rx_count": Number(0, 65536, integer=True),
    }, required=("interval_ms", "sent_ms", "replies")),
    "throughput": Obj({
        "download_test_id": Pattern(HEX_TEST_ID, "16 to 64 lowercase hex digits"),
        "upload_test_id": Pattern(HEX_TEST_ID, "16 to 64 lowercase hex digits"),
        "download_mbps": MBPS,
        "upload_mbps": MBPS,
        "idle_rtt_ms": Number(0, 60_000),
        "loaded_rtt_down_ms": Number(0, 60_000),
        "loaded_rtt_up_ms": Number(0, 60_000),
    }),
    "unsupported": ChoiceList(Choice(UNSUPPORTED, nullable=False), len(UNSUPPORTED)),
    "not_measured": ChoiceList(Choice(BROWSER_GAPS, nullable=False), len(BROWSER_GAPS)),
    "path": Obj({
        "candidate_type": Choice(("host", "srflx", "prflx", "relay")),
        "protocol": Choice(("udp", "tcp")),
        "relay_protocol": Choice(("udp", "tcp", "tls")),
    }),
}, nullable=False, required=("devices",))


def parse_body(raw: bytes) -> dict[str, Any]:
    """The validated body (every field present, None where not measured); BodyError when it is not
    the contract's. `raw` is at most MAX_BODY_BYTES (the caller reads no more)."""
    if len(raw) > MAX_BODY_BYTES:
        raise BodyError("", f"body larger than {MAX_BODY_BYTES // 1024} kB")
    try:
        data = strict_json(raw)
    except ValueError as error:
        raise BodyError("", f"not JSON ({error})"[:200]) from None
    body = BODY.check(data, "")
    assert body is not None
    return body


def _bounded_list(value: Any, max_items: int, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise BodyError(where, f"must be an array, not {_json_type(value)}")
    if len(value) > max_items:
        raise BodyError(where, f"{len(value)} items, at most {max_items}")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {str: "a string", int: "a number", float: "a number", list: "an array", dict: "an object"}.get(
        type(value), type(value).__name__)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
