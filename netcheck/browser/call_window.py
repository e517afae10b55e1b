"""A session's own call, from its browser's getStats (issue 25): the call window's wire format,
the deltas between two snapshots, and the window as a `CallResult`. Pure.

The page (web/callstats.js, or the rtcstats door) posts every 5 s a *snapshot*: the whitelisted
fields of the call's stats as getStats gives them, counters since each stream began. The node keeps
each leg's previous snapshot and takes the differences itself, over the stats' own timestamps, so a
page cannot claim a delta its counters do not show and a lost post costs nothing. Counters that
contradict each other drop the window with a reason (`WindowDropped`), which the node counts; a
field the browser lacks leaves its metric unknown, never 0. Contract: docs/design-notes.md,
"The call itself (issue 25)".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from netcheck.browser.check_body import BodyError, Choice, Number, Obj, Pattern
from netcheck.model import Status
from netcheck.parse import strict_json
from netcheck.results import CallDirection, CallResult

MAX_CALL_BODY_BYTES = 16 * 1024
MAX_PEERS = 4
"""Peer connections followed per leg: a 1:1 call has one, an app with a screen share or an SFU reconnect a few."""
MAX_ENTRIES = 24
"""Stats entries in one post, all peer connections together."""
MAX_STREAMS_PER_KIND = 8
"""Entries of one type and kind in one peer connection (an SFU call shows one inbound stream per speaker)."""
MIN_SPAN_S = 1.0
"""Two snapshots closer than this make rates of a handful of frames: dropped, the older one kept."""
MAX_SPAN_S = 30.0
"""Two snapshots further apart than this say nothing about a moment: the newer one becomes the baseline."""
MAX_PACKETS_PER_S = 5000.0
"""More than a 4K stream sends (≈ 1,000 packets/s at 10 Mbit/s): a counter this fast is made up."""
MAX_FRAMES_PER_S = 240.0
STREAM_ID = re.compile(r"^[\x21-\x7e]{1,64}$")
QUALITY_LIMITATIONS = ("none", "cpu", "bandwidth", "other")
DROP_REASONS = ("first_snapshot", "no_common_stream", "time_went_back", "too_short_gap", "too_long_gap",
                "counter_went_back", "more_frames_than_packets", "more_concealed_than_samples", "impossible_rate")
"""Why a posted window was not judged; the node counts each (docs/design-notes.md)."""


STATS_ID = Pattern(STREAM_ID, "1 to 64 printable ASCII characters", nullable=False)
"""A stats id (Chromium's are like "IT01V1234567")."""


COUNTER = Number(0, 2**53, integer=True)
SECONDS = Number(0, 1e9)
"""getStats' running totals in seconds (totalFreezesDuration, jitterBufferDelay, …)."""
COMMON = {"type": Choice(("inbound-rtp", "outbound-rtp", "remote-inbound-rtp", "candidate-pair"), nullable=False),
          "id": STATS_ID, "timestamp": Number(0, 1e13, nullable=False)}
KIND = Choice(("audio", "video"), nullable=False)
HEIGHT = Number(0, 4320, integer=True)
ENTRY_SCHEMAS = {
    "inbound-rtp": Obj({
        **COMMON, "kind": KIND, "packetsReceived": COUNTER, "packetsLost": Number(-2**31, 2**53, integer=True),
        "jitter": Number(0, 60), "framesDecoded": COUNTER, "frameHeight": HEIGHT, "freezeCount": COUNTER,
        "totalFreezesDuration": SECONDS, "totalInterFrameDelay": SECONDS, "totalSamplesReceived": COUNTER,
        "concealedSamples": COUNTER, "silentConcealedSamples": COUNTER, "jitterBufferDelay": SECONDS,
        "jitterBufferEmittedCount": COUNTER}, nullable=False, required=("type", "id", "timestamp", "kind")),
    "outbound-rtp": Obj({
        **COMMON, "kind": KIND, "packetsSent": COUNTER, "framesSent": COUNTER, "frameHeight": HEIGHT,
        "qualityLimitationReason": Choice(QUALITY_LIMITATIONS),
        "qualityLimitationDurations": Obj({name: SECONDS for name in QUALITY_LIMITATIONS})},
        nullable=False, required=("type", "id", "timestamp", "kind")),
    "remote-inbound-rtp": Obj({
        **COMMON, "kind": KIND, "localId": Pattern(STREAM_ID, "1 to 64 printable ASCII characters"), "fractionLost": Number(0, 1), "jitter": Number(0, 60),
        "roundTripTime": Number(0, 60), "totalRoundTripTime": SECONDS, "roundTripTimeMeasurements": COUNTER},
        nullable=False, required=("type", "id", "timestamp", "kind")),
    "candidate-pair": Obj({
        **COMMON, "currentRoundTripTime": Number(0, 60), "availableOutgoingBitrate": Number(0, 1e10)},
        nullable=False, required=("type", "id", "timestamp")),
}
MONOTONIC = ("packetsReceived", "packetsSent", "framesDecoded", "framesSent", "freezeCount", "totalFreezesDuration",
             "totalInterFrameDelay", "totalSamplesReceived", "concealedSamples", "silentConcealedSamples",
             "jitterBufferDelay", "jitterBufferEmittedCount", "totalRoundTripTime", "roundTripTimeMeasurements")
"""Counters that never go down in one stream; `packetsLost` may (RFC 3550: duplicates)."""

Snapshot = dict[tuple[str, str], dict[str, Any]]
"""(peer connection, stats id) → the entry's validated fields."""


class WindowDropped(Exception):
    """A window not judged: `reason` is one of DROP_REASONS; `rebase` says the new snapshot becomes the baseline."""

    def __init__(self, reason: str, rebase: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rebase = rebase


def parse_call_window(raw: bytes) -> tuple[int, Snapshot]:
    """(seq, snapshot) of a posted call window; BodyError naming the field when it is not the contract's."""
    if len(raw) > MAX_CALL_BODY_BYTES:
        raise BodyError("", f"body larger than {MAX_CALL_BODY_BYTES // 1024} kB")
    try:
        document = strict_json(raw)
    except ValueError as error:
        raise BodyError("", f"not JSON ({error})"[:200]) from None
    if not isinstance(document, dict):
        raise BodyError("", "must be an object")
    for name in document:
        if name not in ("v", "seq", "peers"):
            raise BodyError(str(name)[:64], "unknown field")
    if document.get("v") != 1:
        raise BodyError("v", "must be 1")
    seq = Number(0, 2**53, integer=True, nullable=False).check(document.get("seq"), "seq")
    return int(seq), parse_peers(document.get("peers"))  # type: ignore[arg-type]


def parse_peers(peers: Any) -> Snapshot:
    """The snapshot of a window's `peers` list; BodyError naming the field when it is not the contract's.
    The posts' and the rtcstats door's one check (server/legs/rtcstats.py builds the same list)."""
    if not isinstance(peers, list) or not 1 <= len(peers) <= MAX_PEERS:
        raise BodyError("peers", f"must be an array of 1 to {MAX_PEERS} peer connections")
    snapshot: Snapshot = {}
    entries = 0
    for index, peer in enumerate(peers):
        where = f"peers[{index}]"
        if not isinstance(peer, dict) or set(peer) != {"pc", "stats"} or not isinstance(peer["stats"], list):
            raise BodyError(where, 'must be {"pc": id, "stats": [...]}')
        pc = str(STATS_ID.check(peer["pc"], f"{where}.pc"))
        entries += len(peer["stats"])
        if entries > MAX_ENTRIES:
            raise BodyError(f"{where}.stats", f"more than {MAX_ENTRIES} stats entries in one post")
        streams: dict[tuple[str, str | None], int] = {}
        for number, entry in enumerate(peer["stats"]):
            at = f"{where}.stats[{number}]"
            kind = entry.get("type") if isinstance(entry, dict) else None
            if kind not in ENTRY_SCHEMAS:
                raise BodyError(f"{at}.type", f"must be one of {', '.join(ENTRY_SCHEMAS)}")
            fields = ENTRY_SCHEMAS[kind].check(entry, at)
            assert fields is not None
            key = (kind, fields.get("kind"))
            streams[key] = streams.get(key, 0) + 1
            if streams[key] > MAX_STREAMS_PER_KIND:
                raise BodyError(at, f"more than {MAX_STREAMS_PER_KIND} {kind} entries of one kind")
            if (pc, fields["id"]) in snapshot:
                raise BodyError(f"{at}.id", "repeated")
            snapshot[(pc, fields["id"])] = fields
    return snapshot


@dataclass(frozen=True)
class StreamDelta:
    """One stream between two snapshots: its differences, its values now, and the span between them."""

    pc: str
    now: Mapping[str, Any]
    delta: Mapping[str, float]
    """Only counters present in both snapshots; `packetsLost` never below 0."""
    span_s: float

    def rate(self, name: str) -> float | None:
        return self.delta[name] / self.span_s if name in self.delta else None


def window_deltas(previous: Snapshot, current: Snapshot) -> list[StreamDelta]:
    """The streams of `current` also in `previous`, with their deltas; WindowDropped when the two
    snapshots cannot make a window or their counters contradict each other."""
    if not previous:
        raise WindowDropped("first_snapshot")
    deltas = []
    for key, now in current.items():
        before = previous.get(key)
        if before is None or before["type"] != now["type"]:
            continue
        span_s = (now["timestamp"] - before["timestamp"]) / 1000.0
        if now["type"] == "remote-inbound-rtp":  # stamped when the other end's report came (every 1–5 s), not
            if span_s < 0:                       # when sampled: an unchanged stamp is no new report, not a fault
                raise WindowDropped("time_went_back")
        elif span_s <= 0:
            raise WindowDropped("time_went_back")
        elif span_s > MAX_SPAN_S:
            raise WindowDropped("too_long_gap")
        elif span_s < MIN_SPAN_S:
            raise WindowDropped("too_short_gap", rebase=False)
        delta = {name: float(now[name] - before[name]) for name in (*MONOTONIC, "packetsLost")
                 if now.get(name) is not None and before.get(name) is not None}
        if any(delta[name] < 0 for name in MONOTONIC if name in delta):
            raise WindowDropped("counter_went_back")
        if "packetsLost" in delta:
            delta["packetsLost"] = max(0.0, delta["packetsLost"])
        durations_now = now.get("qualityLimitationDurations") or {}
        durations_before = before.get("qualityLimitationDurations") or {}
        for reason in QUALITY_LIMITATIONS:
            if durations_now.get(reason) is not None and durations_before.get(reason) is not None:
                delta[f"limited_{reason}"] = float(durations_now[reason] - durations_before[reason])
                if delta[f"limited_{reason}"] < 0:
                    raise WindowDropped("counter_went_back")
        _check_consistent(delta, span_s)
        deltas.append(StreamDelta(key[0], now, delta, span_s))
    if not deltas:
        raise WindowDropped("no_common_stream")
    return deltas


def _check_consistent(delta: Mapping[str, float], span_s: float) -> None:
    """Counters one stream cannot show together: a frame needs a packet; no more concealed samples than samples."""
    for frames, packets in (("framesDecoded", "packetsReceived"), ("framesSent", "packetsSent")):
        if frames in delta and packets in delta and delta[frames] > delta[packets]:
            raise WindowDropped("more_frames_than_packets")
    samples = delta.get("totalSamplesReceived")
    if samples is not None and (delta.get("concealedSamples", 0.0) > samples
                                or delta.get("silentConcealedSamples", 0.0) > delta.get("concealedSamples", samples)):
        raise WindowDropped("more_concealed_than_samples")
    for name, limit in (("packetsReceived", MAX_PACKETS_PER_S), ("packetsSent", MAX_PACKETS_PER_S),
                        ("packetsLost", MAX_PACKETS_PER_S), ("framesDecoded", MAX_FRAMES_PER_S),
                        ("framesSent", MAX_FRAMES_PER_S)):
        if delta.get(name, 0.0) > limit * span_s:
            raise WindowDropped("impossible_rate")


def call_result(deltas: Iterable[StreamDelta], call_s: float | None) -> CallResult:
    """The window as the quality model reads it: per direction, the busiest stream of each kind
    (in an SFU call, the person on camera, not a hidden thumbnail)."""
    streams = list(deltas)
    down_video = _busiest(streams, "inbound-rtp", "video", "packetsReceived")
    down_audio = _busiest(streams, "inbound-rtp", "audio", "packetsReceived")
    up_video = _busiest(streams, "outbound-rtp", "video", "packetsSent")
    up_audio = _busiest(streams, "outbound-rtp", "audio", "packetsSent")
    remote_video = _remote_of(streams, up_video, "video")
    remote_audio = _remote_of(streams, up_audio, "audio")
    downstream = CallDirection(
        video_fps=_rounded(down_video.rate("framesDecoded"), 2) if down_video else None,
        video_height=down_video.now.get("frameHeight") if down_video else None,
        video_frozen_ms=_frozen_ms(down_video), video_loss_pct=_loss_pct(down_video),
        audio_loss_pct=_loss_pct(down_audio), audio_jitter_ms=_ms(down_audio.now.get("jitter")) if down_audio else None,
        audio_concealed_pct=_concealed_pct(down_audio), jitter_buffer_ms=_jitter_buffer_ms(down_audio))
    upstream = CallDirection(
        video_fps=_rounded(up_video.rate("framesSent"), 2) if up_video else None,
        video_height=up_video.now.get("frameHeight") if up_video else None, video_frozen_ms=None,
        video_loss_pct=_fraction_pct(remote_video), audio_loss_pct=_fraction_pct(remote_audio),
        audio_jitter_ms=_ms(remote_audio.now.get("jitter")) if remote_audio else None,
        audio_concealed_pct=None, jitter_buffer_ms=None)
    span_s = max((s.span_s for s in streams if s.now["type"] != "remote-inbound-rtp"), default=0.0)
    cpu, bandwidth = (_rounded(100.0 * min(1.0, up_video.delta[name] / up_video.span_s), 1)
                      if up_video and name in up_video.delta else None for name in ("limited_cpu", "limited_bandwidth"))
    pair = next((s for s in streams if s.now["type"] == "candidate-pair"
                 and s.now.get("availableOutgoingBitrate") is not None and (up_video is None or s.pc == up_video.pc)), None)
    return CallResult(
        status=Status.OK, duration_s=round(span_s, 3), call_s=None if call_s is None else round(call_s, 1),
        upstream=upstream, downstream=downstream, rtt_ms=_rtt_ms(streams, (remote_audio, remote_video)),
        quality_limitation=up_video.now.get("qualityLimitationReason") if up_video else None,
        cpu_limited_pct=cpu, bandwidth_limited_pct=bandwidth,
        available_outgoing_kbps=_rounded(pair.now["availableOutgoingBitrate"] / 1000.0, 1) if pair else None)


def audio_packets(deltas: Iterable[StreamDelta]) -> tuple[int, int] | None:
    """(sent, lost) of the window's audio in the direction that lost more of it, for the packet-by-packet
    loss evidence the tabs' warnings use: received audio counts exactly (Δ`packetsReceived` + Δ`packetsLost`,
    Δ`packetsLost`); sent audio as Δ`packetsSent` and the other end's last `fractionLost` of it. None
    when the window has no audio packet."""
    streams = list(deltas)
    counts = []
    down = _busiest(streams, "inbound-rtp", "audio", "packetsReceived")
    if down is not None and "packetsLost" in down.delta:
        lost = max(0, round(down.delta["packetsLost"]))
        counts.append((round(down.delta["packetsReceived"]) + lost, lost))
    up = _busiest(streams, "outbound-rtp", "audio", "packetsSent")
    remote = _remote_of(streams, up, "audio")
    fraction = remote.now.get("fractionLost") if remote is not None else None
    if up is not None and fraction is not None:
        sent = round(up.delta["packetsSent"])
        counts.append((sent, round(fraction * sent)))
    return max(counts, key=lambda count: count[1] / count[0] if count[0] else 0.0, default=None)


def _busiest(streams: list[StreamDelta], kind: str, media: str, packets: str) -> StreamDelta | None:
    """The stream of that type and kind with the most packets in the window; None if none had a packet
    (a camera turned off says nothing about the path)."""
    candidates = [s for s in streams if s.now["type"] == kind and s.now.get("kind") == media
                  and s.delta.get(packets, 0.0) > 0]
    return max(candidates, key=lambda s: s.delta[packets], default=None)


def _remote_of(streams: list[StreamDelta], outbound: StreamDelta | None, media: str) -> StreamDelta | None:
    """The other end's report on our busiest outbound stream of `media` (its `localId`), else on any of that kind."""
    remotes = [s for s in streams if s.now["type"] == "remote-inbound-rtp" and s.now.get("kind") == media]
    if outbound is not None:
        for remote in remotes:
            if remote.pc == outbound.pc and remote.now.get("localId") == outbound.now["id"]:
                return remote
    return remotes[0] if remotes else None


def _frozen_ms(video: StreamDelta | None) -> float | None:
    """Time frozen in the window: Δ totalFreezesDuration (a freeze counts when it ends, so capped at the
    window); without the freeze counters, the whole window when packets came and no frame was decoded."""
    if video is None:
        return None
    window_ms = video.span_s * 1000.0
    if "totalFreezesDuration" in video.delta:
        return round(min(window_ms, video.delta["totalFreezesDuration"] * 1000.0), 1)
    if video.delta.get("framesDecoded") == 0.0:
        return round(window_ms, 1)
    return None


def _loss_pct(stream: StreamDelta | None) -> float | None:
    if stream is None or "packetsLost" not in stream.delta or "packetsReceived" not in stream.delta:
        return None
    expected = stream.delta["packetsReceived"] + stream.delta["packetsLost"]
    return round(100.0 * stream.delta["packetsLost"] / expected, 2) if expected > 0 else None


def _concealed_pct(audio: StreamDelta | None) -> float | None:
    """Concealed samples the listener heard as speech: those of DTX silence are not a defect (where the
    browser tells them apart)."""
    if audio is None or "concealedSamples" not in audio.delta or not audio.delta.get("totalSamplesReceived"):
        return None
    concealed = audio.delta["concealedSamples"] - audio.delta.get("silentConcealedSamples", 0.0)
    return round(100.0 * concealed / audio.delta["totalSamplesReceived"], 2)


def _jitter_buffer_ms(audio: StreamDelta | None) -> float | None:
    if audio is None or "jitterBufferDelay" not in audio.delta or not audio.delta.get("jitterBufferEmittedCount"):
        return None
    return round(1000.0 * audio.delta["jitterBufferDelay"] / audio.delta["jitterBufferEmittedCount"], 1)


def _fraction_pct(remote: StreamDelta | None) -> float | None:
    fraction = remote.now.get("fractionLost") if remote else None
    return None if fraction is None else round(100.0 * fraction, 2)


def _rtt_ms(streams: list[StreamDelta], remotes: tuple[StreamDelta | None, ...]) -> float | None:
    """The window's RTCP round trips (mean of those measured in it), else the last one, the worse of audio
    and video; else the selected ICE pair's current round trip."""
    rtts = []
    for remote in remotes:
        if remote is None:
            continue
        if remote.delta.get("roundTripTimeMeasurements") and "totalRoundTripTime" in remote.delta:
            rtts.append(remote.delta["totalRoundTripTime"] / remote.delta["roundTripTimeMeasurements"])
        elif remote.now.get("roundTripTime") is not None:
            rtts.append(remote.now["roundTripTime"])
    if not rtts:
        rtts = [s.now["currentRoundTripTime"] for s in streams
                if s.now["type"] == "candidate-pair" and s.now.get("currentRoundTripTime") is not None][:1]
    return round(1000.0 * max(rtts), 1) if rtts else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000.0 * seconds, 2)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
