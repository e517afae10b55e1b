"""The call's own statistics (issue 25): the call window's wire format, its deltas, and how the
quality model judges them. Pure: no browser, no server.

The snapshots are Chromium's getStats entries (field names and magnitudes as Chromium 156 reports
a 1:1 call: 720p at 30 fps each way, Opus at 50 packets/s), trimmed to the fields the
module posts (web/callstats.js, docs/design-notes.md "The call itself").
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from netcheck.browser.call_window import (
    MAX_ENTRIES,
    BodyError,
    WindowDropped,
    call_result,
    parse_call_window,
    window_deltas,
)
from netcheck.model import Cue, Level
from netcheck.quality import CALL_ONLY_METRICS, METRICS, assess
from netcheck.results import CallResult

T0_MS = 1_765_120_000_000.0
CALL_ROWS = (*METRICS, *CALL_ONLY_METRICS)
"""A call leg's thresholds: every probe metric and those only the call measures."""


def chromium_snapshot(t_ms: float, second: float) -> list[dict[str, Any]]:
    """A 1:1 call `second` seconds after it began, as Chromium's getStats reports it (clean path)."""
    return [
        {"type": "inbound-rtp", "id": "IT01V1843211231", "timestamp": t_ms, "kind": "video",
         "packetsReceived": int(95 * second), "packetsLost": 0, "jitter": 0.004,
         "framesDecoded": int(30 * second), "frameHeight": 720, "freezeCount": 0, "totalFreezesDuration": 0,
         "totalInterFrameDelay": round(second - 1 / 30, 3)},
        {"type": "inbound-rtp", "id": "IT01A2471109532", "timestamp": t_ms, "kind": "audio",
         "packetsReceived": int(50 * second), "packetsLost": 0, "jitter": 0.002,
         "totalSamplesReceived": int(48000 * second), "concealedSamples": 960, "silentConcealedSamples": 0,
         "jitterBufferDelay": round(0.045 * 48000 * second, 1), "jitterBufferEmittedCount": int(48000 * second)},
        {"type": "outbound-rtp", "id": "OT01V2284839104", "timestamp": t_ms, "kind": "video",
         "packetsSent": int(160 * second), "framesSent": int(30 * second), "frameHeight": 720,
         "qualityLimitationReason": "none",
         "qualityLimitationDurations": {"none": second, "cpu": 0, "bandwidth": 0, "other": 0}},
        {"type": "outbound-rtp", "id": "OT01A3521933001", "timestamp": t_ms, "kind": "audio",
         "packetsSent": int(50 * second)},
        {"type": "remote-inbound-rtp", "id": "RI01V2284839104", "timestamp": t_ms, "kind": "video",
         "localId": "OT01V2284839104", "fractionLost": 0, "jitter": 0.003, "roundTripTime": 0.041,
         "totalRoundTripTime": round(0.041 * second, 3), "roundTripTimeMeasurements": int(second)},
        {"type": "remote-inbound-rtp", "id": "RI01A3521933001", "timestamp": t_ms, "kind": "audio",
         "localId": "OT01A3521933001", "fractionLost": 0, "jitter": 0.0021, "roundTripTime": 0.039,
         "totalRoundTripTime": round(0.039 * second / 5, 3), "roundTripTimeMeasurements": int(second / 5)},
        {"type": "candidate-pair", "id": "CPd9Fk2a_Lq3Bxm1", "timestamp": t_ms, "currentRoundTripTime": 0.04,
         "availableOutgoingBitrate": 2_480_000},
    ]


def body(entries: list[dict[str, Any]], seq: int = 1) -> bytes:
    return json.dumps({"v": 1, "seq": seq, "peers": [{"pc": "pc1", "stats": entries}]}).encode()


def window(before: list[dict[str, Any]], after: list[dict[str, Any]], call_s: float = 60.0) -> CallResult:
    _, previous = parse_call_window(body(before))
    _, current = parse_call_window(body(after))
    return call_result(window_deltas(previous, current), call_s)


def entry(entries: list[dict[str, Any]], kind: str, media: str | None = None) -> dict[str, Any]:
    return next(e for e in entries if e["type"] == kind and (media is None or e.get("kind") == media))


def clean_pair() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return chromium_snapshot(T0_MS, 55.0), chromium_snapshot(T0_MS + 5000, 60.0)


# --- a clean call, figure by figure -----------------------------------------------------------------

def test_a_clean_call_s_window_gives_every_figure_per_direction() -> None:
    call = window(*clean_pair())
    down, up = call.downstream, call.upstream
    assert call.duration_s == 5.0
    assert down.video_fps == 30.0 and down.video_height == 720 and down.video_frozen_ms == 0.0
    assert down.video_loss_pct == 0.0 and down.audio_loss_pct == 0.0
    assert down.audio_jitter_ms == 2.0
    assert down.audio_concealed_pct == 0.0  # the 960 samples concealed at start-up are not this window's
    assert down.jitter_buffer_ms == 45.0
    assert up.video_fps == 30.0 and up.video_height == 720
    assert up.video_loss_pct == 0.0 and up.audio_loss_pct == 0.0 and up.audio_jitter_ms == 2.1
    assert call.rtt_ms == 41.0  # the worse of the window's RTCP round trips (video 41, audio 39)
    assert call.quality_limitation == "none" and call.cpu_limited_pct == 0.0
    assert call.available_outgoing_kbps == 2480.0

    assessment = assess({"call": call}, CALL_ROWS)
    assert assessment.level == Level.GOOD
    for cue in (Cue.FACIAL_EXPRESSION, Cue.VOCAL_TONE, Cue.CONVERSATIONAL_TIMING):
        assert assessment.cues[cue].level == Level.GOOD
    sources = {m.metric: m.source for v in assessment.cues.values() for m in v.metrics if m.value is not None}
    assert sources["rtt_p95_ms"].startswith("call.rtt_ms") and "not a p95" in sources["rtt_p95_ms"]
    assert sources["audio_concealed_pct"] == "call.downstream.audio_concealed_pct"
    assert "mos" in sources


def test_loss_concealment_and_freezes_are_the_window_s_own() -> None:
    before, after = clean_pair()
    audio, video = entry(after, "inbound-rtp", "audio"), entry(after, "inbound-rtp", "video")
    audio["packetsReceived"] -= 20   # 250 expected in 5 s, 230 arrived, 20 lost: 8 %
    audio["packetsLost"] += 20
    audio["concealedSamples"] += 19_200 + 4_800  # 0.5 s of 5 s concealed, 0.1 s of it DTX silence
    audio["silentConcealedSamples"] += 4_800
    video["freezeCount"] += 1
    video["totalFreezesDuration"] += 0.4
    video["framesDecoded"] -= 12
    entry(after, "remote-inbound-rtp", "audio")["fractionLost"] = 0.0234  # 6/256 of ours lost on the way
    call = window(before, after)
    assert call.downstream.audio_loss_pct == 8.0
    assert call.downstream.audio_concealed_pct == 8.0  # 19,200 of 240,000 samples heard as speech
    assert call.downstream.video_frozen_ms == 400.0
    assert call.downstream.video_fps == 27.6
    assert call.upstream.audio_loss_pct == 2.34

    assessment = assess({"call": call}, CALL_ROWS)
    tone = assessment.cues[Cue.VOCAL_TONE]
    assert tone.level == Level.POOR and tone.deciding.direction == "downstream"
    assert {m.metric: m.level for m in tone.metrics}["audio_concealed_pct"] == Level.POOR
    face = {m.metric: m for m in assessment.cues[Cue.FACIAL_EXPRESSION].metrics}
    assert face["frozen_pct"].value == 8.0 and face["frozen_pct"].level == Level.POOR


def test_a_cpu_limited_sender_is_named_as_the_computer_not_the_network() -> None:
    before, after = clean_pair()
    sent = entry(after, "outbound-rtp", "video")
    sent.update(frameHeight=180, framesSent=entry(before, "outbound-rtp", "video")["framesSent"] + 60,
                qualityLimitationReason="cpu")
    sent["qualityLimitationDurations"] = {"none": 55.5, "cpu": 4.5, "bandwidth": 0, "other": 0}
    call = window(before, after, call_s=120.0)
    assert call.cpu_limited_pct == 90.0 and call.upstream.video_fps == 12.0 and call.upstream.video_height == 180
    assessment = assess({"call": call}, CALL_ROWS)
    face = assessment.cues[Cue.FACIAL_EXPRESSION]
    assert face.level == Level.POOR and face.deciding.direction == "upstream"
    advice = " ".join(assessment.advice)
    assert "computer is too busy to send video" in advice and "close other programs" in advice
    assert "bandwidth" not in advice


def test_the_received_height_is_judged_only_once_the_call_has_settled() -> None:
    before, after = clean_pair()
    entry(after, "inbound-rtp", "video")["frameHeight"] = 360  # the other end's sender adapted down
    early = assess({"call": window(before, after, call_s=12.0)}, CALL_ROWS)
    late = assess({"call": window(before, after, call_s=60.0)}, CALL_ROWS)
    early_height, late_height = ({m.metric: m for m in a.cues[Cue.FACIAL_EXPRESSION].metrics}["video_height"]
                                 for a in (early, late))
    assert early_height.level == Level.UNKNOWN and early_height.value is None
    assert late_height.value == 360.0 and late_height.level == Level.FAIR  # the worse direction: 360p received, 720p sent


# --- a field the browser lacks: unknown, never zero ------------------------------------------------

@pytest.mark.parametrize(("missing", "metric", "cue"), [
    (("freezeCount", "totalFreezesDuration"), "frozen_pct", Cue.FACIAL_EXPRESSION),
    (("concealedSamples", "silentConcealedSamples"), "audio_concealed_pct", Cue.VOCAL_TONE),
    (("framesDecoded",), "video_fps", Cue.FACIAL_EXPRESSION),
])
def test_a_field_the_browser_lacks_leaves_its_metric_unknown(missing: tuple[str, ...], metric: str, cue: Cue) -> None:
    before, after = clean_pair()
    kind = "video" if cue == Cue.FACIAL_EXPRESSION else "audio"
    for snapshot in (before, after):
        for name in missing:
            del entry(snapshot, "inbound-rtp", kind)[name]
    if metric == "video_fps":  # the sent frame rate still speaks for the upstream
        for snapshot in (before, after):
            del entry(snapshot, "outbound-rtp", "video")["framesSent"]
    verdict = {m.metric: m for m in assess({"call": window(before, after)}, CALL_ROWS).cues[cue].metrics}[metric]
    assert verdict.value is None and verdict.level == Level.UNKNOWN


def test_without_rtcp_round_trips_the_ice_pair_s_round_trip_is_used_and_without_it_timing_is_unknown() -> None:
    before, after = clean_pair()
    for snapshot in (before, after):
        for remote in (e for e in snapshot if e["type"] == "remote-inbound-rtp"):
            for name in ("roundTripTime", "totalRoundTripTime", "roundTripTimeMeasurements"):
                del remote[name]
    assert window(before, after).rtt_ms == 40.0
    for snapshot in (before, after):
        del entry(snapshot, "candidate-pair")["currentRoundTripTime"]
    assessment = assess({"call": window(before, after)}, CALL_ROWS)
    assert assessment.cues[Cue.CONVERSATIONAL_TIMING].level == Level.UNKNOWN
    assert {m.metric: m.value for m in assessment.cues[Cue.VOCAL_TONE].metrics}["mos"] is None


def test_without_freeze_counters_a_window_with_packets_and_no_frame_was_frozen_throughout() -> None:
    before, after = clean_pair()
    for snapshot in (before, after):
        for name in ("freezeCount", "totalFreezesDuration"):
            del entry(snapshot, "inbound-rtp", "video")[name]
    entry(after, "inbound-rtp", "video")["framesDecoded"] = entry(before, "inbound-rtp", "video")["framesDecoded"]
    call = window(before, after)
    assert call.downstream.video_frozen_ms == 5000.0 and call.downstream.video_fps == 0.0


def test_a_camera_turned_off_says_nothing_about_the_path() -> None:
    before, after = clean_pair()
    received = entry(after, "inbound-rtp", "video")
    received.update({k: entry(before, "inbound-rtp", "video")[k] for k in ("packetsReceived", "framesDecoded")})
    call = window(before, after)
    assert call.downstream.video_fps is None and call.downstream.video_frozen_ms is None


# --- inconsistent counters: dropped with a reason ---------------------------------------------------

def _tamper(kind: str, media: str | None, **fields: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    before, after = clean_pair()
    entry(after, kind, media).update(fields)
    return before, after


@pytest.mark.parametrize(("before_after", "reason", "rebase"), [
    (_tamper("inbound-rtp", "video", packetsReceived=10), "counter_went_back", True),
    (_tamper("outbound-rtp", "video", qualityLimitationDurations={"cpu": 0, "bandwidth": 0, "none": 1, "other": 0}),
     "counter_went_back", True),
    (_tamper("inbound-rtp", "video", framesDecoded=30 * 55 + 600), "more_frames_than_packets", True),
    (_tamper("inbound-rtp", "audio", concealedSamples=48000 * 70), "more_concealed_than_samples", True),
    (_tamper("inbound-rtp", "audio", packetsReceived=50 * 55 + 40_000), "impossible_rate", True),
    (_tamper("inbound-rtp", "video", timestamp=T0_MS - 1000), "time_went_back", True),
    (_tamper("inbound-rtp", "video", timestamp=T0_MS + 31_000), "too_long_gap", True),
    (_tamper("inbound-rtp", "video", timestamp=T0_MS + 500), "too_short_gap", False),
])
def test_inconsistent_counters_drop_the_window_with_a_reason(before_after: Any, reason: str, rebase: bool) -> None:
    before, after = copy.deepcopy(before_after)
    _, previous = parse_call_window(body(before))
    _, current = parse_call_window(body(after))
    with pytest.raises(WindowDropped) as dropped:
        window_deltas(previous, current)
    assert dropped.value.reason == reason and dropped.value.rebase is rebase


def test_the_first_snapshot_and_one_of_other_streams_are_baselines_not_windows() -> None:
    _, current = parse_call_window(body(chromium_snapshot(T0_MS, 5.0)))
    with pytest.raises(WindowDropped, match="first_snapshot"):
        window_deltas({}, current)
    renamed = [{**e, "id": e["id"] + "x"} for e in chromium_snapshot(T0_MS + 5000, 10.0)]
    with pytest.raises(WindowDropped, match="no_common_stream"):
        window_deltas(current, parse_call_window(body(renamed))[1])


def test_a_lost_packet_count_that_goes_down_counts_as_no_loss() -> None:
    before, after = _tamper("inbound-rtp", "audio", packetsLost=-2)  # RFC 3550: duplicates
    assert window(before, after).downstream.audio_loss_pct == 0.0


# --- the wire format's bounds -----------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "field"), [
    (b'{"v": 1, "seq": 1, "peers": [{"pc": "p", "stats": [{"type": "inbound-rtp", "id": "a", "timestamp": 1, '
     b'"kind": "video", "decoderImplementation": "libvpx"}]}]}', "peers[0].stats[0].decoderImplementation"),
    (b'{"v": 1, "seq": 1, "peers": [{"pc": "p", "stats": [{"type": "codec", "id": "a", "timestamp": 1}]}]}',
     "peers[0].stats[0].type"),
    (b'{"v": 1, "seq": 1, "peers": [{"pc": "p", "stats": [{"type": "inbound-rtp", "id": "a", "timestamp": 1, '
     b'"kind": "video", "jitter": NaN}]}]}', ""),
    (b'{"v": 1, "seq": 1, "peers": [{"pc": "p", "stats": [{"type": "inbound-rtp", "id": "a", "timestamp": 1, '
     b'"kind": "video", "packetsReceived": 1e999}]}]}', ""),
    (b'{"v": 1, "seq": 1, "peers": [{"pc": "p", "stats": [{"type": "remote-inbound-rtp", "id": "a", '
     b'"timestamp": 1, "kind": "audio", "fractionLost": 1.5}]}]}', "peers[0].stats[0].fractionLost"),
    (b'{"v": 2, "seq": 1, "peers": []}', "v"),
    (b'{"v": 1, "seq": 1, "peers": [], "note": "hi"}', "note"),
    (b'{"v": 1, "seq": 1, "peers": [{"pc": "a b", "stats": []}]}', "peers[0].pc"),
    (b'[1, 2]', ""),
])
def test_a_body_that_is_not_the_contract_s_is_refused_naming_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(BodyError) as error:
        parse_call_window(raw)
    assert error.value.field == field


def test_sizes_are_bounded() -> None:
    many = [{"type": "inbound-rtp", "id": f"IT{n}", "timestamp": 1, "kind": "video" if n % 2 else "audio"}
            for n in range(MAX_ENTRIES + 1)]
    with pytest.raises(BodyError, match="more than 24 stats entries"):
        parse_call_window(body(many))
    same_kind = [{"type": "inbound-rtp", "id": f"IT{n}", "timestamp": 1, "kind": "video"} for n in range(9)]
    with pytest.raises(BodyError, match="more than 8 inbound-rtp entries of one kind"):
        parse_call_window(body(same_kind))
    peers = [{"pc": f"p{n}", "stats": []} for n in range(5)]
    with pytest.raises(BodyError, match="1 to 4 peer connections"):
        parse_call_window(json.dumps({"v": 1, "seq": 1, "peers": peers}).encode())
    with pytest.raises(BodyError, match="larger than 16 kB"):
        parse_call_window(b" " * (16 * 1024 + 1))
    repeated = [chromium_snapshot(T0_MS, 5.0)[0]] * 2
    with pytest.raises(BodyError, match="repeated"):
        parse_call_window(body(repeated))


def test_concealment_is_judged_on_a_call_leg_only_and_its_warning_is_written_by_the_server() -> None:
    from netcheck.quality.warnings import warning_text
    from netcheck.session.events import check_warning_fields

    before, after = clean_pair()
    probe_rows = {m.metric for m in assess({"call": window(before, after)}).cues[Cue.VOCAL_TONE].metrics}
    assert "audio_concealed_pct" not in probe_rows  # a check never says "not measured: concealment"
    assert check_warning_fields("vocal_tone", "audio_concealed_pct", 8.0)[1] == "audio_concealed_pct"
    message, advice = warning_text(True, Cue.VOCAL_TONE, "client", "audio_concealed_pct", 8.0)
    assert message == "The client's voice is breaking up (8 % of the sound filled in): tone of voice may be missed."


def test_a_remote_report_that_has_not_changed_is_no_new_report_not_a_clock_gone_back() -> None:
    """Chromium stamps remote-inbound-rtp when the other end's RTCP report arrives (audio: every ≈ 5 s): in a
    recorded loopback call (web/callstats.js, by hand) two snapshots 5 s apart kept the audio report's stamp,
    5.5 s older than the others'. Read as a clock gone back, it dropped every other window of a real call."""
    before, after = clean_pair()
    for snapshot in (before, after):
        entry(snapshot, "remote-inbound-rtp", "audio")["timestamp"] = T0_MS - 5457.3
    call = window(before, after)
    assert call.duration_s == 5.0 and call.upstream.audio_loss_pct == 0.0 and call.rtt_ms == 41.0
    entry(after, "remote-inbound-rtp", "audio")["timestamp"] = T0_MS - 6000
    with pytest.raises(WindowDropped, match="time_went_back"):
        window(before, after)
