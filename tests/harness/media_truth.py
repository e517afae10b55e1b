"""Truth for media relayed through TURN, from the impairment relay's log (tests/impairment.py).

With the relay in front of a TURN server's UDP port, every
datagram is a TURN message; media travels as ChannelData (aioice binds a channel before it sends
any data; coturn answers on the channel once bound) or, before that, in Send/Data indications.
SRTP leaves the 12-byte RTP header in the clear, so a head of 4 + 12 bytes suffices for
ChannelData; an indication needs 20 + 12 (XOR-PEER-ADDRESS, IPv4) + 4 + 12 = 48.

`media_truth` classifies each logged head (TURN ChannelData or Send/Data indication, then RTP /
RTCP / DTLS / STUN inside) and counts, per direction and RTP payload type, the packets seen and
dropped.
"""

from __future__ import annotations

import statistics
import struct
from dataclasses import dataclass

from tests.harness.impairment import DOWN, UP

CHANNEL_NUMBERS = range(0x4000, 0x8000)
STUN_MAGIC_COOKIE = b"\x21\x12\xa4\x42"
STUN_SEND_INDICATION, STUN_DATA_INDICATION = 0x0016, 0x0017
STUN_ATTR_DATA = 0x0013
RTCP_PACKET_TYPES_MASKED = range(64, 96)  # RFC 5761 4: RTCP 192-223 are RTP PT 64-95 with marker
AUDIO_RATE_PPS = (30.0, 70.0)  # 20 ms frames: 50 packets/s
AUDIO_MAX_MEDIAN_BYTES = 400
MEDIA_KINDS = ("rtp", "rtcp", "dtls", "stun", "turn", "truncated", "other")


@dataclass(frozen=True)
class RtpHeader:
    """The clear-text fixed header of an (S)RTP packet."""

    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int


def turn_payload(head: bytes) -> tuple[str, bytes | None]:
    """Unwrap one TURN-over-UDP datagram (or its logged head).

    Returns ("channel", payload) for ChannelData, ("indication", payload) for a Send or Data
    indication, ("turn", None) for any other STUN/TURN message (Allocate, Refresh, ChannelBind...),
    ("truncated", None) when the head ends before the DATA attribute, ("other", None) otherwise.
    The payload may itself be cut short by the head length.
    """
    if len(head) >= 4 and (head[0] & 0xC0) == 0x40:
        channel, _length = struct.unpack_from("!HH", head)
        return ("channel", head[4:]) if channel in CHANNEL_NUMBERS else ("other", None)
    if len(head) < 8 or head[0] & 0xC0 or head[4:8] != STUN_MAGIC_COOKIE:
        return "other", None
    message_type = struct.unpack_from("!H", head)[0]
    if message_type not in (STUN_SEND_INDICATION, STUN_DATA_INDICATION):
        return "turn", None
    offset = 20
    while offset + 4 <= len(head):
        attr_type, attr_length = struct.unpack_from("!HH", head, offset)
        if attr_type == STUN_ATTR_DATA:
            return "indication", head[offset + 4: offset + 4 + attr_length]
        offset += 4 + attr_length + (-attr_length % 4)
    return "truncated", None


def classify_payload(payload: bytes) -> str:
    """What a relayed payload is, by its first byte (RFC 7983): stun, dtls, rtp, rtcp, other."""
    if not payload:
        return "truncated"
    first = payload[0]
    if first <= 3:
        return "stun"
    if 20 <= first <= 63:
        return "dtls"
    if 128 <= first <= 191:
        if len(payload) < 2:
            return "truncated"
        return "rtcp" if payload[1] & 0x7F in RTCP_PACKET_TYPES_MASKED else "rtp"
    return "other"


def parse_rtp(payload: bytes) -> RtpHeader | None:
    """The RTP fixed header, or None when the payload is not RTP or is shorter than 12 bytes."""
    if len(payload) < 12 or classify_payload(payload) != "rtp":
        return None
    _flags, marker_pt, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", payload)
    return RtpHeader(marker_pt & 0x7F, bool(marker_pt & 0x80), sequence, timestamp, ssrc)


def classify_media_datagram(head: bytes) -> tuple[str, RtpHeader | None]:
    """(kind, RTP header or None) of one logged TURN datagram; kind is one of MEDIA_KINDS."""
    wrapper, payload = turn_payload(head)
    if payload is None:
        return wrapper, None
    kind = classify_payload(payload)
    if kind == "rtp":
        header = parse_rtp(payload)
        return ("rtp", header) if header else ("truncated", None)
    return kind, None


def media_truth(log: dict, audio_payload_type: int | None = None) -> dict:
    """Per direction, what the relay did to the RTP packets of each payload type.

    Returns {"audio_payload_type": PT or None, "up": DIR, "down": DIR} where DIR is
    {"rtp": {PT: STREAM}, "kinds": {kind: seen}, "kinds_dropped": {kind: dropped},
     "audio": STREAM or None} and STREAM is {"seen", "dropped", "blackout_dropped", "not_sent",
    "loss_pct" (= dropped / seen x 100), "ssrcs", "rate_pps", "median_bytes"}. "up" is what the
    TURN client sent (its upstream media), "down" what it was sent.

    Without `audio_payload_type`, audio is the payload type that comes at about 50 packets/s with
    the smallest median size under AUDIO_MAX_MEDIAN_BYTES (video comes in bursts of large packets).
    """
    if log.get("truncated"):
        raise ValueError("relay log is truncated; no truth can be computed from it")
    directions: dict[str, dict] = {}
    for direction in (UP, DOWN):
        kinds = dict.fromkeys(MEDIA_KINDS, 0)
        kinds_dropped = dict.fromkeys(MEDIA_KINDS, 0)
        packets: dict[int, list[tuple[dict, RtpHeader]]] = {}
        for entry in log["datagrams"]:
            if entry["dir"] != direction:
                continue
            kind, header = classify_media_datagram(bytes.fromhex(entry["head"]))
            kinds[kind] += 1
            kinds_dropped[kind] += bool(entry["dropped"])
            if header is not None:
                packets.setdefault(header.payload_type, []).append((entry, header))
        streams = {pt: _rtp_stream(found) for pt, found in sorted(packets.items())}
        directions[direction] = {"rtp": streams, "kinds": kinds, "kinds_dropped": kinds_dropped}
    if audio_payload_type is None:
        audio_payload_type = _infer_audio_payload_type(directions)
    for side in directions.values():
        side["audio"] = side["rtp"].get(audio_payload_type) if audio_payload_type is not None else None
    return {"audio_payload_type": audio_payload_type, UP: directions[UP], DOWN: directions[DOWN]}


def _rtp_stream(found: list[tuple[dict, RtpHeader]]) -> dict:
    seen = len(found)
    dropped = sum(bool(e["dropped"]) for e, _ in found)
    arrivals = sorted(e["arrival_ns"] for e, _ in found if e.get("arrival_ns") is not None)
    by_ssrc: dict[int, int] = {}
    for _, header in found:
        by_ssrc[header.ssrc] = by_ssrc.get(header.ssrc, 0) + 1
    # packets per second of the busiest SSRC, over the span of the whole payload type
    span_s = (arrivals[-1] - arrivals[0]) / 1e9 if len(arrivals) > 1 else 0.0
    return {
        "seen": seen, "dropped": dropped,
        "blackout_dropped": sum(e.get("reason") == "blackout" for e, _ in found),
        "not_sent": sum(not e["dropped"] and not e["sent"] for e, _ in found),
        "loss_pct": 100 * dropped / seen if seen else 0.0,
        "ssrcs": sorted(by_ssrc),
        "rate_pps": (max(by_ssrc.values()) - 1) / span_s if span_s > 0 else None,
        "median_bytes": statistics.median(e["size"] for e, _ in found) if all("size" in e for e, _ in found) else None,
    }


def _infer_audio_payload_type(directions: dict[str, dict]) -> int | None:
    low, high = AUDIO_RATE_PPS
    candidates: dict[int, float] = {}
    for side in directions.values():
        for pt, stream in side["rtp"].items():
            size, rate = stream["median_bytes"], stream["rate_pps"]
            if stream["seen"] >= 10 and rate is not None and low <= rate <= high \
                    and size is not None and size <= AUDIO_MAX_MEDIAN_BYTES:
                candidates[pt] = min(size, candidates.get(pt, size))
    return min(candidates, key=lambda pt: (candidates[pt], pt)) if candidates else None
