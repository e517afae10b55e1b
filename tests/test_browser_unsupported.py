"""A browser that cannot make the call (issue 26, Must show 2): Chromium with `RTCPeerConnection` taken
away before the page loads (WebKitGTK, built without WebRTC like many in-app browsers, does not run
on this machine's Debian with a camera), and Chromium with `getUserMedia` taken away.

Contract: before Start, `body[data-unsupported]` lists what is missing (`webrtc`, `getusermedia`); the
page says in one sentence that this browser cannot make video calls and which browsers can, offers
to copy the link, and the check still ends in `done` with the speed measured; the server, told what
the browser lacks, does not take the call that never started for one a firewall blocked."""

from __future__ import annotations

import pytest

from netcheck.browser.check_report import BROWSER_CANNOT_CALL
from tests.harness.axe import assert_accessible
from tests.harness.browser import chromium, result, run_check
from tests.test_browser_page import QUICK_PLAN, Posted, planned_server

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_chromium_per_module")]

WITHOUT = {
    "webrtc": "delete window.RTCPeerConnection; delete window.webkitRTCPeerConnection;",
    "getusermedia": "if (navigator.mediaDevices) delete Object.getPrototypeOf(navigator.mediaDevices).getUserMedia;",
}
"""Init scripts that take one API away before any of the page's own scripts run."""
BROWSERS_THAT_WORK = ("Safari", "Chrome", "Firefox", "Edge")


@pytest.fixture(scope="module")
def quick_server(tmp_path_factory):
    with planned_server(tmp_path_factory.mktemp("quick"), QUICK_PLAN) as running:
        yield running


def check_without(browser, server, api: str):  # type: ignore[no-untyped-def]
    context = browser.new_context()
    context.add_init_script(WITHOUT[api])
    page = context.new_page()
    posted = Posted(page)
    page.goto(f"{server.http_url}/check")
    page.wait_for_selector("body[data-ready='true']")
    return page, posted


def test_a_browser_without_webrtc_says_which_browsers_can_call_and_still_measures_the_speed(quick_server) -> None:
    with chromium() as browser:
        page, posted = check_without(browser, quick_server, "webrtc")
        assert page.get_attribute("body", "data-unsupported") == "webrtc"
        words = page.inner_text("#unsupported-text")
        assert "cannot make video calls" in words and all(name in words for name in BROWSERS_THAT_WORK), words
        assert page.is_visible("#copy-link")
        assert_accessible(page, "unsupported browser, before Start")
        assert run_check(page) == "done"
        answer = result(page)
        assert_accessible(page, "unsupported browser, verdict")
        sentence = page.inner_text("#verdict-sentence")
    assert posted.body is not None and posted.body["unsupported"] == ["webrtc"]
    assert answer["held_back_by"] == "browser" and answer["recommendation"] == "unknown"
    assert answer["summary"].startswith(BROWSER_CANNOT_CALL) and answer["advice"][0] == BROWSER_CANNOT_CALL
    assert "firewall" not in " ".join(answer["advice"]), answer["advice"]
    assert "av" not in answer["measurements"]  # never tried: not a call that failed
    throughput = answer["measurements"]["throughput"]
    assert throughput["status"] == "ok" and throughput["download_mbps"] > 0 and throughput["upload_mbps"] > 0
    assert "cannot make video calls" in sentence and all(name in sentence for name in BROWSERS_THAT_WORK)


def test_a_browser_without_getusermedia_says_so_and_still_makes_the_call(quick_server) -> None:
    with chromium() as browser:
        page, posted = check_without(browser, quick_server, "getusermedia")
        assert page.get_attribute("body", "data-unsupported") == "getusermedia"
        assert page.is_hidden("#unsupported")  # it can call: the devices step says what it could not open
        assert run_check(page) == "done"
        answer = result(page)
    assert posted.body is not None and posted.body["unsupported"] == ["getusermedia"]
    assert answer["measurements"]["av"]["status"] == "ok"  # the server's picture and sound still came down
    assert answer["measurements"]["throughput"]["download_mbps"] > 0
    assert answer["held_back_by"] != "browser"
