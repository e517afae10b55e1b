"""What a client's browser cannot measure is named so (issue 26): the page lists it, the server checks
the list, the model says "not measured in this browser" instead of blaming a missing probe, and the
store keeps the names."""

from __future__ import annotations

import dataclasses
import json

import pytest

from netcheck.browser.check_body import BodyError, parse_body
from netcheck.browser.check_report import BROWSER_GAP_METRICS
from netcheck.model import Cue, Level, Recommendation
from netcheck.quality import assess
from netcheck.quality.assess import NOT_MEASURED_HERE
from netcheck.store.points import flatten_result
from tests.test_quality import CLEAN_AV, CLEAN_UDP

DEVICES = {"secure_context": True, "camera": "ok", "microphone": "ok", "speakers": "not_asked"}


def test_a_call_whose_browser_cannot_time_lip_sync_leaves_it_not_measured_in_this_browser() -> None:
    firefox_like = dataclasses.replace(CLEAN_AV, av_skew_ms=None, not_measured_here=("av_skew_ms",),
                                       downstream=dataclasses.replace(CLEAN_AV.downstream, av_skew_ms=None),
                                       upstream=dataclasses.replace(CLEAN_AV.upstream, av_skew_ms=None))
    result = assess({"udp": CLEAN_UDP, "av": firefox_like})
    lip_sync = result.cues[Cue.LIP_SYNC]
    assert lip_sync.level == Level.UNKNOWN and lip_sync.note == NOT_MEASURED_HERE
    assert lip_sync.metrics[0].source == NOT_MEASURED_HERE
    assert result.recommendation == Recommendation.VIDEO
    # without the browser's word, the same gap is a missing probe's
    plain = assess({"udp": CLEAN_UDP, "av": dataclasses.replace(firefox_like, not_measured_here=())})
    assert plain.cues[Cue.LIP_SYNC].note.startswith("not measured (needs")


def test_the_page_names_only_known_gaps_and_few_of_them() -> None:
    body = parse_body(json.dumps({"devices": DEVICES, "not_measured": ["lip_sync_not_calibrated"] * 2}).encode())
    assert body["not_measured"] == ["lip_sync_not_calibrated"]
    assert parse_body(json.dumps({"devices": DEVICES}).encode())["not_measured"] == []
    assert set(BROWSER_GAP_METRICS) == {"no_frame_callback", "no_audio_worklet", "lip_sync_not_calibrated",
                                        "sound_not_started"}
    for bad in (["<script>"], "lip_sync_not_calibrated", ["no_frame_callback"] * (len(BROWSER_GAP_METRICS) + 1), [1]):
        with pytest.raises(BodyError):
            parse_body(json.dumps({"devices": DEVICES, "not_measured": bad}).encode())


def test_the_store_keeps_the_names_as_one_string_field() -> None:
    fields = flatten_result(dataclasses.replace(CLEAN_AV, not_measured_here=("av_skew_ms",)))
    assert fields["not_measured_here"] == "av_skew_ms"
    assert "not_measured_here" not in flatten_result(CLEAN_AV)


FIREFOX_AUDIO_M_LINE = (
    "m=audio 9 UDP/TLS/RTP/SAVPF 109\r\nc=IN IP4 0.0.0.0\r\n"
    "a=candidate:0 1 UDP 2122187007 2590f9cd-bb43-40bc-aba0-d13300671992.local 38979 typ host\r\n"
    "a=candidate:2 1 TCP 2105458943 2590f9cd-bb43-40bc-aba0-d13300671992.local 9 typ host tcptype active\r\n"
    "a=end-of-candidates\r\na=mid:0\r\n")


def test_an_offer_of_mdns_candidates_is_left_open_and_any_other_is_untouched() -> None:
    """The node cannot resolve a client's `.local` names; closed, aioice would drop every component
    and answer with no candidate (Firefox's calls failed so)."""
    from netcheck.av.peer import offer_left_open

    opened = offer_left_open(FIREFOX_AUDIO_M_LINE)
    assert "end-of-candidates" not in opened and "a=candidate:" not in opened and "a=mid:0\r\n" in opened
    plain = FIREFOX_AUDIO_M_LINE.replace("2590f9cd-bb43-40bc-aba0-d13300671992.local", "192.0.2.7")
    assert offer_left_open(plain) == plain


def test_a_browser_without_webrtc_is_held_back_by_the_browser_not_blamed_on_a_firewall() -> None:
    """The server leaves out the call a browser without WebRTC never tried: no recommendation, the
    browser's sentence first, and what it measured (the speed) kept."""
    from netcheck.browser.check_report import BROWSER_CANNOT_CALL, ServerView, build_check

    body = parse_body(json.dumps({"devices": {**DEVICES, "camera": "not_asked", "microphone": "not_asked"},
                                  "unsupported": ["webrtc", "getusermedia"],
                                  "throughput": {"download_mbps": 40.0, "upload_mbps": 10.0}}).encode())
    assert body["unsupported"] == ["getusermedia", "webrtc"]
    view = ServerView(call=None, voice_arrivals=None, download=None, upload=None, short_of_cpu=False)
    check = build_check(body, view, "c" * 32, "2026-12-07T20:00:00.000+00:00", 5.0, "http://node", None)
    report = check.report
    assert report["held_back_by"] == "browser" and report["recommendation"] == "unknown"
    assert report["summary"].startswith(BROWSER_CANNOT_CALL) and report["advice"][0] == BROWSER_CANNOT_CALL
    assert "av" not in report["measurements"] and not any("firewall" in line for line in report["advice"])
    assert report["measurements"]["throughput"]["download_mbps"] == 40.0
    with pytest.raises(BodyError):
        parse_body(json.dumps({"devices": DEVICES, "unsupported": ["flash"]}).encode())
