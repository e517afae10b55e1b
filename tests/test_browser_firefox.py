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
    # on loopback Firefox pairs no hidden (mDNS) candidate with the node's 127.0.0.1, so here it shows
    # its real ones, as it does once a user allows the camera; the session tab's test below runs in a
    # namespace, off loopback, with the mDNS names Firefox offers without that grant
    with firefox({"media.peerconnection.ice.obfuscate_host_addresses": False}) as driver:
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


def test_a_firefox_whose_sound_never_starts_checks_the_rest_and_says_what_it_could_not(
        server: ServerProcess) -> None:
    """Was: without a sound device (here: without the mock sound pref) `AudioContext.resume()` never
    settles and the page waited in `loading` for ever. Now it goes on without sound: the microphone is
    not checked (a stopped sound engine reads silence, which would have said "silent"), no chime is
    offered, lip sync is named as not measured for that reason, and the call and the speed test run."""
    with firefox({"media.cubeb.force_mock_context": False,
                  "media.peerconnection.ice.obfuscate_host_addresses": False}) as driver:
        driver.get(f"{server.http_url}/check")
        state = run_check(driver)
        seen = driver.execute_script("""return {
            note: document.getElementById('sound-off').hidden ? null : document.getElementById('sound-off').innerText,
            chime: !document.getElementById('heard').hidden,
            missing: [...document.querySelectorAll('#not-measured li')].map((li) => li.dataset.missing) }""")
        answer = result(driver)
    assert state == "done", answer
    assert seen["note"] and "did not start its sound" in seen["note"], seen
    assert seen["chime"] is False and seen["missing"] == ["sound_not_started"], seen
    assert answer is not None and answer["recommendation"] == "video", (answer or {}).get("summary")
    devices = {entry["key"]: entry for entry in answer["devices"]}
    assert "microphone.not_measured" in devices and "video app" in devices["microphone.not_measured"]["advice"]
    av = answer["measurements"]["av"]
    assert av["status"] == "ok" and av["not_measured_here"] == ["av_skew_ms"], av
    assert answer["measurements"]["throughput"]["download_mbps"] > 0


@pytest.mark.netns
def test_the_session_tab_in_firefox_with_8_percent_loss_raises_the_clients_voice_warning_on_the_panel(tmp_path) -> None:
    """The client's session tab in Firefox, inside a namespace whose incoming UDP loses 8 %; the
    therapist's panel in Chromium outside it and `netcheck watch --json`: the client's vocal-tone
    warning is raised on both (the tab's windows are judged by the server, whatever the browser)."""
    import time

    from selenium.webdriver.common.by import By

    from tests.harness.browser import chromium
    from tests.harness.firefox import body_data, namespaced_firefox, wait_for
    from tests.harness.netns import ClientNamespace
    from tests.test_session_client_tab import (
        PANEL_WARNING, SESSION, SHORT_WINDOWS, client_summary, lose_8_pct_until_the_panel_warns,
        node_for_a_namespaced_tab, serve_token,
    )
    from tests.test_session_e2e import next_event

    with ClientNamespace() as namespace, node_for_a_namespaced_tab(namespace, tmp_path) as (running, events), \
            namespaced_firefox(namespace) as tab, chromium() as panel_browser:
        tab.get(f"{running.http_url}/session/{SESSION}/client{SHORT_WINDOWS}#token={serve_token('client')}")
        panel = panel_browser.new_page(viewport={"width": 400, "height": 900})
        panel.goto(f"{running.http_url}/session/{SESSION}#token={serve_token('therapist')}")
        panel.wait_for_selector("body[data-live='yes']", timeout=30_000)
        wait_for(tab, lambda: body_data(tab, "state") == "measuring", 30.0, "the tab measuring")
        next_event(events, time.monotonic() + 10, client_summary)
        raised, lossy_s, raised_s = lose_8_pct_until_the_panel_warns(namespace, events, panel)
        level = panel.get_attribute(PANEL_WARNING, "data-level")
        wait_for(tab, lambda: tab.find_element(By.ID, "badge").get_attribute("data-connection") == "weak",
                 10.0, "the tab's badge saying weak")
    print(f"raised {raised_s - lossy_s:.1f} s after 8 % loss began: {raised['message']}")
    assert "client's voice is breaking up" in raised["message"] and raised["advice"]
    assert raised["metric"] == "loss_one_way_pct" and level == "poor"
