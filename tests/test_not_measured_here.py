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
    assert set(BROWSER_GAP_METRICS) == {"no_frame_callback", "no_audio_worklet", "lip_sync_not_calibrated"}
    for bad in (["<script>"], "lip_sync_not_calibrated", ["no_frame_callback"] * 4, [1]):
        with pytest.raises(BodyError):
            parse_body(json.dumps({"devices": DEVICES, "not_measured": bad}).encode())


def test_the_store_keeps_the_names_as_one_string_field() -> None:
    fields = flatten_result(dataclasses.replace(CLEAN_AV, not_measured_here=("av_skew_ms",)))
    assert fields["not_measured_here"] == "av_skew_ms"
    assert "not_measured_here" not in flatten_result(CLEAN_AV)
