"""The check page in Firefox ESR (issue 26, Must show 1): a real call from Debian's Firefox to a loopback
`netcheck serve`, its fake camera and microphone, driven by Selenium (tests/harness/firefox.py).

Every cue is measured there or named as not measured in that browser: lip sync, whose page-side
constant was fitted on Chromium, is not measured in Firefox rather than judged with Chromium's
constant (which reads −247 ms on in-sync markers there)."""

from __future__ import annotations

import pytest

from netcheck.quality.assess import NOT_MEASURED_HERE
from tests.harness.firefox import firefox, result, run_check
from tests.harness.servers import ServerProcess

pytestmark = pytest.mark.slow


def test_a_check_in_firefox_says_video_and_names_lip_sync_as_not_measured_in_this_browser(
        server: ServerProcess) -> None:
    with firefox() as driver:
        driver.get(f"{server.http_url}/check")
        state = run_check(driver)
        missing = driver.execute_script(
            "return [...document.querySelectorAll('#not-measured li')].map((li) => li.dataset.missing)")
        answer = result(driver)
    assert state == "done", answer
    assert answer is not None and answer["recommendation"] == "video", (answer or {}).get("summary")
    cues = answer["cues"]
    for name, cue in cues.items():
        assert cue["level"] != "unknown" or cue["note"] == NOT_MEASURED_HERE, (name, cue["note"])
    assert cues["lip_sync"]["level"] == "unknown" and cues["lip_sync"]["note"] == NOT_MEASURED_HERE
    assert cues["facial_expression"]["level"] == "good" and cues["vocal_tone"]["level"] == "good"
    av = answer["measurements"]["av"]
    assert av["status"] == "ok" and av["not_measured_here"] == ["av_skew_ms"], av
    assert av["downstream"]["video_fps"] >= 24 and av["downstream"]["av_skew_ms"] is None, av["downstream"]
    assert missing == ["lip_sync_not_calibrated"]
