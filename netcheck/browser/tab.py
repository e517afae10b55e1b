"""A session's leg (the client's or the therapist's) measured from a browser tab (docs/in-session.md):
the tab's offer and window reports validated, and each window's probe results built from them and the
server's own records. Pure.

The tab keeps one peer connection with the server for the session. Every window it posts what only
it can see: the voice stream's sends and the replies it got, its view of the server's picture
(getStats) and of its own sending. The server trusts its own records wherever it has them — the
voice stream's arrival times and count, the picture that arrived from the tab — and builds the
probes' own result dataclasses with the probes' own statistics (`check_report.voice_result` →
`probes.udp.summarise_echoes`), so a tab's window is judged, warned about, stored and charted
exactly as a `netcheck agent` window is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netcheck.bounds import Range
from netcheck.browser.check_body import KBPS, PERCENT, BodyError, Choice, Pattern, Number, NumberList, Obj
from netcheck.browser.check_report import ice_path, voice_result
from netcheck.model import Status
from netcheck.parse import strict_json
from netcheck.results import AvDirection, AvResult, UdpResult

LEG_WINDOW_S = Range(2.0, 30.0, "s")
"""A tab's window: the agent's 5 s by default; 2 s lets a test see a warning raise and clear quickly."""
LEG_RATE_PPS = Range(1.0, 50.0, "packets/s")
"""The voice stream's rate: the agent's 10 packets/s by default; the data channel answers at most 100/s."""
DEFAULT_WINDOW_S = 5.0
DEFAULT_RATE_PPS = 10.0
LATE_REPLY_MS = 1000.0
"""A voice packet is reported in the first window that ends this long after it was sent: its reply
had that long to come (the agent's UDP stream leaves 20 % of a 5 s window, 1 s, for late replies)."""
SEQ_MODULUS = 65536
"""The voice contract's sequence numbers are below this; a tab's stream wraps around (21 min at 50/s)."""
MAX_VOICE_ITEMS = 2000
"""50 packets/s for 30 s, with room for a window that came late."""
MAX_REPORT_BYTES = 64 * 1024
MAX_OFFER_SDP_CHARS = 32 * 1024
CLOCK_MAX_MS = 1e12
CLIENT_SEND_TOLERANCE_MS = 0.01
"""The tab reports its send times rounded to µs; the server holds the exact ones from each request."""
LEG_ID = re.compile(r"^[0-9a-f]{32}$")
QUALITY_LIMITATIONS = ("none", "cpu", "bandwidth", "other")
"""WebRTC's qualityLimitationReason of the tab's own sending."""

RTT_MS = Number(0, 60_000)


@dataclass(frozen=True)
class ReplyPairs:
    """[[seq, client_recv_ms], …]: the server has its own receive and send times of each echo."""

    max_items: int

    def check(self, value: Any, where: str) -> list[tuple[int, float]]:
        if not isinstance(value, list):
            raise BodyError(where, "must be an array")
        if len(value) > self.max_items:
            raise BodyError(where, f"{len(value)} items, at most {self.max_items}")
        seq, clock = Number(0, SEQ_MODULUS - 1, integer=True, nullable=False), Number(-CLOCK_MAX_MS, CLOCK_MAX_MS,
                                                                                       nullable=False)
        pairs = []
        for index, pair in enumerate(value):
            at = f"{where}[{index}]"
            if not isinstance(pair, list) or len(pair) != 2:
                raise BodyError(at, "must be [seq, client_recv_ms]")
            pairs.append((seq.check(pair[0], f"{at}[0]"), clock.check(pair[1], f"{at}[1]")))
        return pairs  # type: ignore[return-value]


REPORT = Obj({
    "leg_id": Pattern(LEG_ID, "the leg_id the offer answered (32 hex digits)"),
    "index": Number(0, 10_000_000, integer=True, nullable=False),
    "voice": Obj({
        "first_seq": Number(0, SEQ_MODULUS - 1, integer=True, nullable=False),
        "sent_ms": NumberList(Number(-CLOCK_MAX_MS, CLOCK_MAX_MS, nullable=False), MAX_VOICE_ITEMS),
        "replies": ReplyPairs(MAX_VOICE_ITEMS),
    }, required=("first_seq", "sent_ms", "replies")),
    "downstream": Obj({
        "duration_s": Number(0, 3600),
        "video_fps": Number(0, 240),
        "video_width": Number(0, 7680, integer=True),
        "video_height": Number(0, 4320, integer=True),
        "video_freezes": Number(0, 100_000, integer=True),
        "video_frozen_ms": Number(0, 3_600_000),
        "video_loss_pct": PERCENT,
        "video_bitrate_kbps": KBPS,
        "rtt_ms": RTT_MS,
    }),
    "upstream": Obj({
        "quality_limitation": Choice(QUALITY_LIMITATIONS),
        "video_bitrate_kbps": KBPS,
        "rtt_ms": RTT_MS,
    }),
    "path": Obj({
        "candidate_type": Choice(("host", "srflx", "prflx", "relay")),
        "protocol": Choice(("udp", "tcp")),
        "relay_protocol": Choice(("udp", "tcp", "tls")),
    }),
}, nullable=False, required=("leg_id", "index"))


def parse_report(raw: bytes) -> dict[str, Any]:
    """A tab's window report, every field present (None where not measured); BodyError naming the
    field when it is not the contract's (unknown field, wrong type, out of range, too long)."""
    data = _json_document(raw, MAX_REPORT_BYTES)
    report = REPORT.check(data, "")
    assert report is not None
    return report


@dataclass(frozen=True)
class LegOffer:
    sdp: str
    window_s: float
    rate_pps: float


def parse_offer(raw: bytes) -> LegOffer:
    """`{"type": "offer", "sdp": …, "window_s": 5, "rate_pps": 10}`; window and rate are optional."""
    data = _json_document(raw, MAX_OFFER_SDP_CHARS + 1024)
    if not isinstance(data, dict):
        raise BodyError("", "must be an object")
    for name in data:
        if name not in ("type", "sdp", "window_s", "rate_pps"):
            raise BodyError(str(name)[:64], "unknown field")
    if data.get("type") != "offer":
        raise BodyError("type", 'must be "offer"')
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not 0 < len(sdp) <= MAX_OFFER_SDP_CHARS:
        raise BodyError("sdp", f"must be a session description of at most {MAX_OFFER_SDP_CHARS} characters")
    window_s = Number(LEG_WINDOW_S.low, LEG_WINDOW_S.high).check(data.get("window_s"), "window_s")
    rate_pps = Number(LEG_RATE_PPS.low, LEG_RATE_PPS.high).check(data.get("rate_pps"), "rate_pps")
    return LegOffer(sdp, DEFAULT_WINDOW_S if window_s is None else float(window_s),
                    DEFAULT_RATE_PPS if rate_pps is None else float(rate_pps))


@dataclass(frozen=True)
class VoiceArrival:
    """One echo request as the server received it."""

    client_send_ms: float
    """The tab's send time carried in the request: tells a seq of this window from one 65536 earlier."""
    server_recv_ms: float
    server_send_ms: float


def voice_window(voice: Mapping[str, Any] | None, arrivals: Mapping[int, VoiceArrival]) -> UdpResult | None:
    """The window's voice stream as the UDP probe reports one; None when the tab sent nothing.

    `voice["sent_ms"][i]` is the send time of seq `first_seq + i` (mod 65536); replies name seqs.
    Only the server's own arrivals count as received upstream, and only replies to requests the
    server answered (a claimed reply to a request it never saw is left out).
    """
    if voice is None or not voice["sent_ms"]:
        return None
    first, sent_ms = voice["first_seq"], voice["sent_ms"]
    sent = len(sent_ms)

    def position(seq: int) -> int | None:
        offset = (seq - first) % SEQ_MODULUS
        return offset if offset < sent else None

    own: dict[int, tuple[float, float]] = {}
    for offset, send_ms in enumerate(sent_ms):
        arrival = arrivals.get((first + offset) % SEQ_MODULUS)
        if arrival is not None and abs(arrival.client_send_ms - send_ms) <= CLIENT_SEND_TOLERANCE_MS:
            own[offset] = (arrival.server_recv_ms, arrival.server_send_ms)
    replies = [[offset, client_recv_ms, 0.0, 0.0] for seq, client_recv_ms in voice["replies"]
               if (offset := position(seq)) is not None]
    return voice_result({"sent_ms": sent_ms, "replies": replies}, own)


@dataclass(frozen=True)
class ReceivedVideo:
    """What the server saw of the tab's picture in one window (its own receiver)."""

    fps: float | None
    width: int | None
    height: int | None
    freezes: int
    frozen_ms: float
    loss_pct: float | None


def window_av(received: ReceivedVideo | None, report: Mapping[str, Any], duration_s: float,
              server_rtt_ms: float | None, server_cpu_pct: float | None,
              server_busy: bool | None = None) -> AvResult | None:
    """The window's call: the server's reception is the upstream, the tab's the downstream.

    Both pictures are small synthetic ones of a fixed size (the tab's test card, the server's), so
    their heights say nothing about the path and are never judged (`resolution_adapts` False), nor
    do their bitrates (a mostly still card needs tens of kbit/s, which the advice would read as a
    starved link): they stay out. Frame rate, freezes and loss are judged. Lip sync is not
    measured in a tab (no markers, no sound).
    None when neither side has a figure yet.
    """
    down, up = report["downstream"], report["upstream"] or {}
    if down is None and received is None:
        return None
    upstream = AvDirection(
        video_fps=received.fps if received else None, video_width=received.width if received else None,
        video_height=received.height if received else None, video_freezes=received.freezes if received else None,
        video_frozen_ms=round(received.frozen_ms, 1) if received else None,
        video_loss_pct=received.loss_pct if received else None, video_bitrate_kbps=None,
        audio_loss_pct=None, audio_jitter_ms=None, audio_bitrate_kbps=None,
        rtt_ms=server_rtt_ms if server_rtt_ms is not None else up.get("rtt_ms"), av_skew_ms=None,
        resolution_adapts=False)
    down = down or {}
    downstream = AvDirection(
        video_fps=down.get("video_fps"), video_width=down.get("video_width"), video_height=down.get("video_height"),
        video_freezes=down.get("video_freezes"), video_frozen_ms=down.get("video_frozen_ms"),
        video_loss_pct=down.get("video_loss_pct"), video_bitrate_kbps=None,
        audio_loss_pct=None, audio_jitter_ms=None, audio_bitrate_kbps=None, rtt_ms=down.get("rtt_ms"),
        av_skew_ms=None, resolution_adapts=False)
    route = ice_path(report["path"])
    return AvResult(status=Status.OK, time_to_first_frame_ms=None, av_skew_ms=None, upstream=upstream,
                    downstream=downstream, ice_path=route,
                    udp_blocked=False if route and route != "relay-tcp" else None,
                    duration_s=round(duration_s, 3), error=None, server_cpu_pct=server_cpu_pct,
                    server_busy=server_busy)


def _json_document(raw: bytes, limit: int) -> Any:
    if len(raw) > limit:
        raise BodyError("", f"body larger than {limit // 1024} kB")
    try:
        return strict_json(raw)
    except ValueError as error:
        raise BodyError("", f"not JSON ({error})"[:200]) from None
