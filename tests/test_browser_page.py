"""The browser check's page (issue 13) in headless Chromium against a real `netcheck serve`.

The camera and microphone are Chromium's fake devices (a moving pattern, a beep a second), or a
wav of silence for the silent microphone. The page's posted measurements are read from the
request it sends (POST /v1/checks), so the page's own figures are tested, not the server's reading
of them. Lip sync is the server's marked downstream as the page plays it.

Not the fake files with netcheck's markers (tests/harness/browser.py marked_media) for the
upstream: Chromium loops the y4m and the wav independently, from whenever each device started, so
the offset between them — the upstream's lip-sync truth — is not known (one run read +192 ms).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.axe import assert_accessible
from tests.harness.browser import chromium, result, run_check, silent_wav
from netcheck.config import ServeLimits
from netcheck.server.app import AV_SESSIONS_PER_CLIENT
from tests.harness.servers import start_serve, stop, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_chromium_per_module")]

CALL_ADMITTED = lambda response: response.url.endswith("/v1/av/offer") and response.status == 200  # noqa: E731
DONE = "body[data-state='done'], body[data-state='error']"
CHECK_BUDGET_S = 30.0
LIP_SYNC_TOLERANCE_MS = 30.0
"""Issue 13: the page's skew within ±30 ms of the server's audio offset."""


@dataclass(frozen=True)
class Plan:
    """The page's step lengths, s (`[serve] page_call_watch_s`, `page_voice_s`, `page_speed_phase_s`)."""

    call_watch_s: float
    voice_s: float
    speed_phase_s: float


FULL_PLAN = Plan(ServeLimits.page_call_watch_s, ServeLimits.page_voice_s, ServeLimits.page_speed_phase_s)
"""The page's own step lengths: for the claims that are figures (time to verdict, lip sync, loss, rates)."""
QUICK_PLAN = Plan(call_watch_s=2.0, voice_s=1.0, speed_phase_s=1.5)
"""For the claims that are not figures needing a whole check (a device's finding, the keyboard, the busy
share, an insecure context, blocked UDP): every step still runs and completes, shorter. The server
judges no picture size in a call under RESOLUTION_SETTLED_S (neither plan's call is that long)."""
LIP_SYNC_PLAN = Plan(FULL_PLAN.call_watch_s, FULL_PLAN.voice_s, speed_phase_s=1.5)
"""Lip sync is timed through the call and the voice step and finished before the speed step (main.js: a
saturated link moves both buffers), so its figure stands on the first two lengths only: those are the page's."""
MODULE_CHECK_BURST = 1000
"""The module's servers are shared by its tests: the per-address check rate (5, then one per 20 s) is
test_browser_check_server.py's claim, not these; here it would refuse the sixth check of the module."""


def plan_config(plan: Plan) -> str:
    """config.toml for a test's server: the page's plan, and checks enough for the module's tests."""
    return (f"[serve]\ncheck_burst = {MODULE_CHECK_BURST}\npage_call_watch_s = {plan.call_watch_s}\n"
            f"page_voice_s = {plan.voice_s}\npage_speed_phase_s = {plan.speed_phase_s}\n")


@contextlib.contextmanager
def planned_server(home: Path, plan: Plan) -> Iterator:
    """`netcheck serve` on loopback whose pages run `plan`."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(plan_config(plan))
    running = start_serve(env=subprocess_env(NETCHECK_HOME=str(home)))
    try:
        yield running
    finally:
        stop(running.process)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module's full-length checks (each page's call ends when it posts its check)."""
    with planned_server(tmp_path_factory.mktemp("full"), FULL_PLAN) as running:
        yield running


@pytest.fixture(scope="module")
def lip_sync_server(tmp_path_factory):
    """One server for the lip-sync runs: its pages run LIP_SYNC_PLAN."""
    with planned_server(tmp_path_factory.mktemp("lip_sync"), LIP_SYNC_PLAN) as running:
        yield running


@pytest.fixture(scope="module")
def quick_server(tmp_path_factory):
    """One server for the module's checks whose claims are not figures: its pages run QUICK_PLAN."""
    with planned_server(tmp_path_factory.mktemp("quick"), QUICK_PLAN) as running:
        yield running


class Posted:
    """The body of the page's POST /v1/checks, seen as it leaves (nothing intercepted)."""

    def __init__(self, page) -> None:
        self.body: dict | None = None
        page.on("request", self._seen)
        page.on("requestfailed", lambda request: print(f"request failed: {request.url} {request.failure}"))

    def _seen(self, request) -> None:
        if request.method == "POST" and request.url.endswith("/v1/checks"):
            self.body = json.loads(request.post_data or "null")


def open_check(browser, server, query: str = ""):
    page = browser.new_page()
    posted = Posted(page)
    page.goto(f"{server.http_url}/check{query}")
    return page, posted


def finding(page, device: str) -> str | None:
    return page.get_attribute(f"[data-device='{device}']", "data-finding")


def assert_held_back(page, recommendation: str, device: str) -> None:
    """The verdict blames the device, not the connection, and never promises what the device cannot give."""
    assert page.get_attribute("#verdict", "data-recommendation") == recommendation
    assert result(page)["held_back_by"] == device
    sentence = page.inner_text("#verdict-sentence")
    assert f"fix the {device}" in sentence and "see your face clearly" not in sentence, sentence
    assert "connection can carry" in page.inner_text("#cues-h")  # the cues are the connection's, not the session's


VOICE_PER_S = 50
VOICE_SENT_SHARE = 150 / 160
"""Of the voice step's packets (50 a second for its length), at least this share sent: 150 of 3.2 s's 160."""


def assert_network_part_completed(posted: Posted, plan: Plan = FULL_PLAN) -> None:
    body = posted.body
    assert body is not None, "the page never posted its measurements"
    assert body["voice"] is not None and body["voice"]["server_rx_count"] is not None
    sent, due = len(body["voice"]["sent_ms"]), VOICE_PER_S * plan.voice_s
    assert sent >= round(due * VOICE_SENT_SHARE), f"{sent} voice packets sent of {due:.0f} due"  # 150 in 3.2 s
    assert sent <= due + 1, f"{sent} voice packets sent of {due:.0f} due: the page did not run the server's plan"
    assert body["throughput"]["download_mbps"] and body["throughput"]["upload_mbps"]
    assert body["path"] is not None


def test_clean_loopback_says_video_with_all_four_cues_within_30_s(server):
    with chromium() as browser:
        page, posted = open_check(browser, server)
        started = time.monotonic()
        state = run_check(page)
        elapsed_s = time.monotonic() - started
        answer = result(page)
        print(f"time to verdict {elapsed_s:.1f} s; posted downstream {posted.body and posted.body['downstream']}")
        assert state == "done", page.inner_text("#error")
        assert elapsed_s <= CHECK_BUDGET_S
        assert answer["recommendation"] == "video"
        assert page.get_attribute("#verdict", "data-recommendation") == "video"
        for cue in ("facial_expression", "vocal_tone", "conversational_timing", "lip_sync"):
            assert answer["cues"][cue]["level"] != "unknown", cue
        assert answer.get("check_id") and answer.get("code")
        assert finding(page, "camera") == "ok" and finding(page, "microphone") == "ok"
        assert_network_part_completed(posted)
        downstream = posted.body["downstream"]
        assert downstream["video_fps"] > 15 and downstream["video_height"] > 0
        assert downstream["av_skew_ms"] is not None
        assert_accessible(page, "verdict video")


STATES_PLAN = Plan(call_watch_s=4.0, voice_s=1.5, speed_phase_s=1.5)
"""Long enough for each step to be looked at by axe-core (≈ 0.5 s a look) while it lasts."""


def test_every_state_of_the_check_page_has_no_wcag_violation(tmp_path):
    """axe-core (WCAG 2.1 A/AA) at the start, in each step as it runs, at the verdict, and on the error a
    refused token gives (issue 26); the verdict's other forms are looked at by the tests that make them."""
    with planned_server(tmp_path / "states", STATES_PLAN) as running, chromium() as browser:
        page, _posted = open_check(browser, running)
        page.wait_for_selector("body[data-ready='true']")
        assert_accessible(page, "start")
        page.click("#start")
        for state in ("devices", "call", "voice", "speed"):
            page.wait_for_selector(f"body[data-state='{state}']", state="attached", timeout=30_000)
            assert_accessible(page, state)
        page.wait_for_selector(DONE, state="attached", timeout=30_000)
        assert page.get_attribute("body", "data-state") == "done"
        assert_accessible(page, "done")
        refused = browser.new_page()
        refused.goto(f"{running.http_url}/check#token=not-a-token")
        assert run_check(refused) == "error"
        assert_accessible(refused, "error: the link's token refused")


STEADY_AUDIO_JITTER_BUFFER_MS = 60.0
"""The premise of the lip-sync accuracy test: a steady playout pipeline. Loopback has no network jitter,
so an audio jitter buffer above this (quiet runs: 30–55 ms) means packets came late because the machine
was short of CPU (seen in CI: 70 and 110 ms, with the skews drifting by 330 ms within one call). Such a
run measures the busy machine's playback, truly, and says nothing of the page's accuracy."""


def lip_sync_run(server, audio_offset_ms: int) -> tuple[float | None, dict]:
    """One browser check with the server's audio `audio_offset_ms` ahead; the posted skew and the page's diagnostics."""
    with chromium() as browser:
        page, posted = open_check(browser, server, f"?audio_offset_ms={audio_offset_ms}")
        run_check(page)
        diagnostics = page.evaluate("window.netcheckDiagnostics ?? null")
        assert posted.body is not None and posted.body["audio_offset_ms"] == audio_offset_ms
        skew_ms = posted.body["downstream"]["av_skew_ms"]
        print(f"offset {audio_offset_ms:+d} ms: page skew {skew_ms} ms; diagnostics {diagnostics}")
        assert diagnostics is not None
        return skew_ms, diagnostics


@pytest.mark.parametrize("audio_offset_ms", [-150, -60, 40, 120])
def test_lip_sync_in_the_page_follows_the_server_audio_offset(lip_sync_server, audio_offset_ms):
    skew_ms, diagnostics = lip_sync_run(lip_sync_server, audio_offset_ms)
    if diagnostics["audio_jitter_buffer_ms"] > STEADY_AUDIO_JITTER_BUFFER_MS:  # the premise failed: once more
        skew_ms, diagnostics = lip_sync_run(lip_sync_server, audio_offset_ms)
    assert diagnostics["audio_jitter_buffer_ms"] <= STEADY_AUDIO_JITTER_BUFFER_MS, \
        "the machine was too busy for a steady playout twice: this run cannot judge the page's accuracy"
    assert skew_ms is not None
    assert len(diagnostics["skews_ms"]) >= 4, "too few markers timed for a lip-sync figure"
    assert abs(skew_ms - audio_offset_ms) <= LIP_SYNC_TOLERANCE_MS


def test_permission_denied_is_explained_and_the_network_part_completes(quick_server):
    with chromium(fake_ui=False) as browser:
        context = browser.new_context(permissions=[])
        page = context.new_page()
        posted = Posted(page)
        page.goto(f"{quick_server.http_url}/check")
        state = run_check(page)
        assert finding(page, "camera") == "denied"
        assert finding(page, "microphone") == "denied"
        assert page.is_visible("[data-device='camera'][data-finding='denied']")
        assert posted.body["devices"]["camera"] == "denied"
        assert state == "done", page.inner_text("#error")
        assert_network_part_completed(posted, QUICK_PLAN)
        assert_held_back(page, "phone", "microphone")  # nothing heard, nothing seen: the phone
        assert_accessible(page, "verdict phone, camera and microphone denied")


def test_no_camera_is_explained_and_the_network_part_completes(quick_server):
    with chromium(no_camera=True) as browser:
        page, posted = open_check(browser, quick_server)
        state = run_check(page)
        assert finding(page, "camera") == "missing"
        assert finding(page, "microphone") == "ok"
        assert posted.body["devices"]["camera"] == "missing"
        assert state == "done", page.inner_text("#error")
        assert_network_part_completed(posted, QUICK_PLAN)
        assert_held_back(page, "audio_only", "camera")
        assert_accessible(page, "verdict audio only, no camera")


CAMERA_BUSY_FAKE = """
// FAKE (named): another program holding the camera cannot be made with Chromium's fake devices, so
// getUserMedia fails for video exactly as Chromium fails it then (NotReadableError); audio is real.
const realGetUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {
  if (constraints && constraints.video) throw new DOMException("Could not start video source", "NotReadableError");
  return realGetUserMedia(constraints);
};
"""


def test_a_camera_used_by_another_program_is_explained_and_the_network_part_completes(quick_server):
    with chromium() as browser:
        page = browser.new_page()
        page.add_init_script(CAMERA_BUSY_FAKE)
        posted = Posted(page)
        page.goto(f"{quick_server.http_url}/check")
        state = run_check(page)
        assert finding(page, "camera") == "busy" and finding(page, "microphone") == "ok"
        assert "close" in page.inner_text("[data-device='camera']").lower()  # close the other program
        assert posted.body["devices"]["camera"] == "busy"
        assert state == "done", page.inner_text("#error")
        assert_network_part_completed(posted, QUICK_PLAN)
        assert_held_back(page, "audio_only", "camera")


def test_silent_microphone_is_explained_and_the_network_part_completes(quick_server, tmp_path):
    with chromium(audio_file=silent_wav(tmp_path)) as browser:
        page, posted = open_check(browser, quick_server)
        state = run_check(page)
        assert finding(page, "microphone") == "silent"
        assert finding(page, "camera") == "ok"
        assert posted.body["devices"]["microphone"] == "silent"
        assert state == "done", page.inner_text("#error")
        assert_network_part_completed(posted, QUICK_PLAN)
        assert_held_back(page, "phone", "microphone")
        assert_accessible(page, "verdict phone, silent microphone")


def test_one_check_more_than_the_share_is_told_the_server_is_busy_then_completes(quick_server):
    """The server admits AV_SESSIONS_PER_CLIENT calls from one address at once (issue 15): the page
    after those gets 429 + Retry-After, says so, waits, and completes once a call has ended."""
    with chromium() as browser:
        # every page loaded first: the extra asks while the admitted calls are surely held (loading a page
        # between the admissions and the extra's start left the first call ≈ 2 s to end before it: seen
        # once, on a busy machine, as no busy notice at all)
        admitted = [open_check(browser, quick_server)[0] for _ in range(AV_SESSIONS_PER_CLIENT)]
        extra, extra_posted = open_check(browser, quick_server)
        for page in (*admitted, extra):
            page.wait_for_selector("body[data-ready='true']")
        for page in admitted:
            with page.expect_response(CALL_ADMITTED, timeout=30_000):  # it holds one of the address's calls
                page.click("#start")
        extra.click("#start")
        extra.wait_for_selector("#busy[data-busy='true']", timeout=30_000)
        assert extra.is_visible("#busy")
        assert_accessible(extra, "the server busy, waiting")
        for page in admitted:
            page.wait_for_selector(DONE, state="attached", timeout=60_000)
            assert page.get_attribute("body", "data-state") == "done"
        extra.wait_for_selector(DONE, state="attached", timeout=90_000)
        assert extra.get_attribute("body", "data-state") == "done", extra.inner_text("#error")
        assert not extra.is_visible("#busy")
        assert_network_part_completed(extra_posted, QUICK_PLAN)


# --- impaired paths: Chromium in a network namespace, the server on the root end of its veth ---------

LOSS_RULES = ("table inet netcheck_page_loss {\n chain prerouting {\n  type filter hook prerouting priority 0;\n"
              "  meta l4proto udp numgen random mod 100 lt 8 drop\n }\n}\n")
"""8 % of the UDP datagrams arriving in the client's namespace dropped at random (no netem here; on an
output hook the sender's sendto would fail with EPERM instead)."""


def check_from_namespace(namespace, tmp_path, secure: bool = True, inspect=None,
                         browser_turn: tuple[str, str] | None = None,
                         plan: Plan = FULL_PLAN) -> tuple[dict | None, Posted, float]:
    """A check run by Chromium inside `namespace` against a server on the namespace's root end;
    `secure`: Chromium told to treat that http:// origin as secure (else the page is not a secure
    context); `inspect(page)` is called once the check is done; `browser_turn`: (URL, secret) of a
    TURN server the server hands to the page (`serve --browser-turn`, NETCHECK_TURN_SECRET); `plan`:
    the page's step lengths."""
    from tests.harness.browser import insecure_origin_args, namespaced_chromium

    (tmp_path / "config.toml").write_text(plan_config(plan))
    env = subprocess_env(NETCHECK_HOME=str(tmp_path), NETCHECK_ICE_HOST_ADDRESSES=namespace.root_address,
                         **({"NETCHECK_TURN_SECRET": browser_turn[1]} if browser_turn else {}))
    turn_args = ("--browser-turn", browser_turn[0]) if browser_turn else ()
    running = start_serve("--bind", namespace.root_address, *turn_args, env=env)
    try:
        with chromium(executable=namespaced_chromium(namespace, tmp_path),
                      extra=insecure_origin_args(running.http_url) if secure else ()) as browser:
            page = browser.new_page()
            posted = Posted(page)
            page.goto(f"{running.http_url}/check")
            started = time.monotonic()
            state = run_check(page)
            elapsed_s = time.monotonic() - started
            assert state == "done", page.inner_text("#error")
            assert page.evaluate("window.isSecureContext") == secure
            if inspect is not None:
                inspect(page)
            return result(page), posted, elapsed_s
    finally:
        stop(running.process)


LOSS_PLAN = Plan(FULL_PLAN.call_watch_s, voice_s=6.4, speed_phase_s=FULL_PLAN.speed_phase_s)
"""A voice step twice the page's: 320 packets, not 160. Its voice is judged poor at a one-way loss above 3 %;
at 8 % truth the 160 packets of 3.2 s lose ≤ 4 (3 % or less) with probability 0.33 % (binomial: 1 run
in 300, and the 13 reruns read 5.0–11.9 %), 320 lose ≤ 9 with probability 0.009 % (1 in 10,800)."""


@pytest.mark.netns
def test_random_udp_loss_of_8_percent_is_not_video_and_names_the_voice_direction(tmp_path):
    from tests.harness.netns import ClientNamespace

    with ClientNamespace() as namespace:
        namespace.run(["nft", "-f", "-"], input=LOSS_RULES, text=True, check=True)
        answer, posted, elapsed_s = check_from_namespace(namespace, tmp_path, plan=LOSS_PLAN)
    vocal = answer["cues"]["vocal_tone"]
    voice, downstream = posted.body["voice"], posted.body["downstream"]
    udp = answer["measurements"].get("udp") or {}
    figures = (f"{elapsed_s:.1f} s: {answer['recommendation']}; vocal tone {vocal['level']} by "
               f"{vocal['deciding_metric']} {vocal['value']} {vocal['direction']} (voice: {len(voice['sent_ms'])} sent, "
               f"{voice['server_rx_count']} reached the server, {len(voice['replies'])} replies back; loss up "
               f"{udp.get('loss_up_pct')} %, down {udp.get('loss_down_pct')} %); video loss downstream "
               f"{downstream['video_loss_pct']} % over {downstream['duration_s']} s at "
               f"{downstream['video_bitrate_kbps']} kbit/s; advice {answer['advice']}")
    print(figures)
    assert answer["recommendation"] != "video", figures
    assert vocal["level"] == "poor", figures
    assert vocal["direction"] == "downstream", figures  # the loss is on the way into the client's namespace
    assert downstream["video_loss_pct"] > 3, figures


@pytest.mark.netns
def test_a_1_mbit_link_asks_for_360p_or_audio_only(tmp_path):
    from tests.harness.netns import ClientNamespace, Tbf

    with ClientNamespace(up=Tbf(1000), down=Tbf(1000)) as namespace:
        answer, posted, elapsed_s = check_from_namespace(namespace, tmp_path)
    print(f"{elapsed_s:.1f} s: {answer['recommendation']}, video setting {answer['video_setting']}; "
          f"throughput {posted.body['throughput']}")
    assert answer["video_setting"] in ("360p", "audio only")


@pytest.mark.netns
def test_udp_blocked_without_turn_says_so_and_the_check_still_completes(tmp_path):
    from tests.harness.netns import ClientNamespace

    with ClientNamespace(block_udp=True) as namespace:
        answer, posted, elapsed_s = check_from_namespace(
            namespace, tmp_path, plan=QUICK_PLAN, inspect=lambda page: assert_accessible(page, "UDP blocked, verdict"))
    print(f"{elapsed_s:.1f} s: {answer['recommendation']}; advice {answer['advice']}")
    assert answer["recommendation"] != "video"
    assert posted.body["path"] is None and posted.body["downstream"] is None
    assert posted.body["throughput"]["download_mbps"]  # the HTTP part still measured
    assert answer["measurements"]["av"]["status"] != "ok"
    assert answer["advice"]  # what to do about it (the server's wording: a firewall, a TURN server)


@pytest.mark.netns
def test_udp_blocked_with_the_servers_turn_over_tcp_completes_over_the_relay_and_says_so(tmp_path):
    """The page gets the server's TURN server with short-lived credentials (/v1/info) and relays its
    call over TCP through a real coturn on the namespace's root end: measured, and the advice says so."""
    from tests.harness.coturn import Coturn
    from tests.harness.netns import ClientNamespace

    secret = "clinic-coturn-static-auth-secret"
    with ClientNamespace(block_udp=True) as namespace, \
            Coturn(host=namespace.root_address, auth_secret=secret) as turn:
        answer, posted, elapsed_s = check_from_namespace(namespace, tmp_path, browser_turn=(turn.url("tcp"), secret))
    print(f"{elapsed_s:.1f} s: {answer['recommendation']}; path {posted.body['path']}; advice {answer['advice']}")
    assert answer["measurements"]["av"]["status"] == "ok"
    assert posted.body["path"]["candidate_type"] == "relay" and posted.body["path"]["relay_protocol"] == "tcp"
    assert answer["measurements"]["av"]["ice_path"] == "relay-tcp"
    assert any("only works through the clinic's TURN server over TCP" in line for line in answer["advice"])
    assert posted.body["voice"]["server_rx_count"] > 0  # the voice data channel went through the relay too


def test_keyboard_only_the_speaker_answer_and_run_again(quick_server):
    """Started and answered with the keyboard; the answer is posted; "Run the check again" gives a new check."""
    with chromium() as browser:
        page, posted = open_check(browser, quick_server)
        page.wait_for_selector("body[data-ready='true']")
        page.focus("#start")
        page.keyboard.press("Enter")
        page.wait_for_selector("#heard", state="visible")
        page.focus("#heard")
        page.keyboard.press("Enter")
        assert finding(page, "speakers") == "heard"
        page.wait_for_selector(DONE, state="attached", timeout=60_000)
        first = result(page)
        assert posted.body["devices"]["speakers"] == "heard"
        page.focus("#run-again")
        page.keyboard.press("Enter")
        page.wait_for_selector("body[data-state='devices']", state="attached")
        assert finding(page, "speakers") == "not_asked"
        page.wait_for_selector(DONE, state="attached", timeout=60_000)
        assert page.get_attribute("body", "data-state") == "done", page.inner_text("#error")
        assert result(page)["check_id"] != first["check_id"]
        assert posted.body["devices"]["speakers"] == "not_asked"


@pytest.mark.netns
def test_a_page_that_is_not_a_secure_context_says_so_and_still_measures_the_connection(tmp_path):
    from tests.harness.netns import ClientNamespace

    def inspect(page) -> None:
        assert page.is_visible("#insecure")
        assert finding(page, "camera") == "not_asked" and finding(page, "microphone") == "not_asked"
        assert_accessible(page, "not a secure context, verdict")

    with ClientNamespace() as namespace:
        answer, posted, elapsed_s = check_from_namespace(namespace, tmp_path, secure=False, inspect=inspect,
                                                         plan=QUICK_PLAN)
    print(f"{elapsed_s:.1f} s: {answer['recommendation']}; devices {answer['devices']}")
    assert posted.body["devices"]["secure_context"] is False
    assert any(entry["device"] == "browser" for entry in answer["devices"])
    assert posted.body["voice"] is not None and posted.body["throughput"]["download_mbps"]
