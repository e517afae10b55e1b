"""Undoing @jitsi/rtcstats' delta-compressed getstats (netcheck/browser/rtcstats_stats.py) on what a real
Chromium reports: found by issue 25's Must show 3, the npm client in Chromium through the door."""

from __future__ import annotations

import pytest

from netcheck.browser.rtcstats_stats import EntryDropped, undo_delta

FINGERPRINT = ":".join(["E5"] * 32)
"""A SHA-256 fingerprint as Chromium writes it (95 characters): its certificate report's id is "CF" + it."""


def test_a_certificate_named_by_its_fingerprint_is_undone_and_its_deltas_follow() -> None:
    """Chromium's first getstats names each certificate "CF" + its fingerprint (97 characters): the door
    dropped the whole first snapshot as malformed (ids were held to a stream id's 64), and every delta
    after it as an unknown report, so a real call was never judged."""
    first = {"timestamp": 1_796_700_540_000.0,
             f"CF{FINGERPRINT}": {"timestamp": 0, "type": "certificate", "fingerprintAlgorithm": "sha-256"},
             "IT01A1": {"timestamp": 0, "type": "inbound-rtp", "kind": "audio", "packetsReceived": 250,
                        "packetsLost": 0}}
    reports, stamp_ms = undo_delta({}, first)
    assert stamp_ms == first["timestamp"]
    assert reports[f"CF{FINGERPRINT}"]["type"] == "certificate"
    delta = {"timestamp": 1_796_700_545_000.0, f"CF{FINGERPRINT}": {"timestamp": 0},
             "IT01A1": {"timestamp": 0, "packetsReceived": 480, "packetsLost": 20}}
    reports, _ = undo_delta(reports, delta)
    assert reports["IT01A1"]["packetsLost"] == 20 and reports["IT01A1"]["kind"] == "audio"


def test_an_id_past_any_browsers_is_still_malformed() -> None:
    with pytest.raises(EntryDropped) as dropped:
        undo_delta({}, {"timestamp": 1.0e12, "C" * 257: {"type": "certificate"}})
    assert dropped.value.reason == "malformed_delta"
