"""Headless Chromium for the browser check's tests: fake devices fed with netcheck's own markers.

    files = marked_media(tmp_path, audio_offset_ms=0)      # y4m + wav: ground truth for the upstream
    with chromium(video_file=files.video, audio_file=files.audio) as browser:
        page = browser.new_page()
        page.goto(f"{server.http_url}/check?audio_offset_ms=-60")
        run_check(page)                                    # clicks Start, waits for done or error

Debian's /usr/bin/chromium, driven by Playwright for Python (`playwright install` cannot download
browsers here and is not needed). The camera and microphone are Chromium's fake devices; with
files they play the y4m and wav in a loop: every frame carries its index (markers.paint_code) and
the wav carries a 1 kHz burst at each marker frame's time minus `audio_offset_ms`, exactly as the
server's own marked tracks do, so the server's upstream lip sync has a known truth too.
"""

from __future__ import annotations

import contextlib
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from netcheck.av import markers
from netcheck.av.markers import AUDIO_RATE_HZ, VideoFormat

CHROMIUM = "/usr/bin/chromium"
FAKE_DEVICES_ARG = "--use-fake-device-for-media-stream=fps=30"
"""Chromium's fake camera (a moving test pattern, any asked size; 20 fps unless told) and microphone (a beep a second)."""
FAKE_UI_ARG = "--use-fake-ui-for-media-stream"
NO_CAMERA_ARG = "--use-fake-device-for-media-stream=device-count=0"
"""Chromium's fake capture factory with no video device: the page finds no camera (the fake microphone stays)."""
CHECK_TIMEOUT_MS = 60_000
"""A check takes ≤ 30 s; the busy case waits for another check's call to end first."""


@dataclass(frozen=True)
class MarkedMedia:
    video: Path
    audio: Path
    format: VideoFormat
    audio_offset_ms: float


def write_y4m(path: Path, video: VideoFormat, seconds: float) -> Path:
    """A y4m file whose every frame carries its index code over the markers' moving background."""
    frames = round(seconds * video.fps)
    width, height = video.width, video.height
    background = markers.background_luma(width, height)
    chroma = bytes((128,)) * ((width // 2) * (height // 2))
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{video.fps}:1 Ip A1:1 C420jpeg\n".encode())
        for index in range(frames):
            scroll = (index % 64) * width
            luma = bytearray(background[scroll:scroll + width * height])
            markers.paint_code(luma, width, width, index)
            out.write(b"FRAME\n")
            out.write(luma)
            out.write(chroma)
            out.write(chroma)
    return path


def write_wav(path: Path, video: VideoFormat, seconds: float, audio_offset_ms: float = 0.0,
              silent: bool = False) -> Path:
    """Mono 48 kHz s16: silence with the markers' bursts (none when `silent`), as long as the y4m loop."""
    count = round(seconds * AUDIO_RATE_HZ)
    starts = [] if silent else [start for start in markers.burst_start_samples(video, audio_offset_ms, 1000)
                                if start < count]
    samples = markers.audio_samples(0, count, starts)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(AUDIO_RATE_HZ)
        out.writeframes(samples.tobytes())
    return path


def marked_media(folder: Path, video: VideoFormat = VideoFormat(640, 360, 30), seconds: float = 2.0,
                 audio_offset_ms: float = 0.0) -> MarkedMedia:
    """A y4m and a wav that loop together (same length, a whole number of marker periods)."""
    return MarkedMedia(write_y4m(folder / "camera.y4m", video, seconds),
                       write_wav(folder / "microphone.wav", video, seconds, audio_offset_ms),
                       video, audio_offset_ms)


def silent_wav(folder: Path, seconds: float = 2.0) -> Path:
    return write_wav(folder / "silence.wav", VideoFormat(640, 360, 30), seconds, silent=True)


def chromium_args(*, fake_ui: bool = True, video_file: Path | None = None, audio_file: Path | None = None,
                  no_camera: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
    args = ["--no-sandbox"]
    args.append(NO_CAMERA_ARG if no_camera else FAKE_DEVICES_ARG)
    if fake_ui:
        args.append(FAKE_UI_ARG)
    if video_file is not None:
        args.append(f"--use-file-for-fake-video-capture={video_file}")
    if audio_file is not None:
        args.append(f"--use-file-for-fake-audio-capture={audio_file}")
    return [*args, *extra]


@contextlib.contextmanager
def chromium(executable: str = CHROMIUM, **options) -> Iterator:
    """A headless Chromium (Playwright Browser) with fake devices; options as `chromium_args`.

    Inside `one_chromium_per_module()` the Playwright driver is the module's, and Chromium with
    the default options is launched once and handed to each test (its pages and contexts are
    closed after the test; `browser.new_page()` gives every page a fresh context)."""
    if _MODULE_POOL:
        with _MODULE_POOL[-1].browser(executable, options) as browser:
            yield browser
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=chromium_args(**options))
        try:
            yield browser
        finally:
            browser.close()


class _ChromiumPool:
    """One Playwright driver for a module's tests, and one Chromium with the default options."""

    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        self._driver = sync_playwright()
        self._playwright = self._driver.start()
        self._default = None

    @contextlib.contextmanager
    def browser(self, executable: str, options: dict) -> Iterator:
        shared = executable == CHROMIUM and not options  # a namespace's Chromium ends with its namespace
        if shared and (self._default is None or not self._default.is_connected()):
            self._default = self._launch(executable, options)
        browser = self._default if shared else self._launch(executable, options)
        try:
            yield browser
        finally:
            if shared:
                for context in browser.contexts:
                    context.close()
            else:
                browser.close()

    def _launch(self, executable: str, options: dict):  # type: ignore[no-untyped-def]
        return self._playwright.chromium.launch(executable_path=executable, headless=True,
                                                args=chromium_args(**options))

    def close(self) -> None:
        if self._default is not None:
            self._default.close()
        self._driver.__exit__()


_MODULE_POOL: list[_ChromiumPool] = []


@contextlib.contextmanager
def one_chromium_per_module() -> Iterator[None]:
    """While open, `chromium()` shares one driver and one default Chromium (tests/conftest.py's
    `one_chromium_per_module` fixture). Only for modules whose tests make no asyncio loop of their
    own: Playwright's sync API marks its loop as the thread's running loop while its driver lives."""
    pool = _ChromiumPool()
    _MODULE_POOL.append(pool)
    try:
        yield
    finally:
        _MODULE_POOL.remove(pool)
        pool.close()


def namespaced_chromium(namespace, folder: Path, cgroup_procs: Path | None = None) -> str:
    """An executable that starts Chromium inside `namespace` (a tests.harness.netns.ClientNamespace).

    Playwright talks to Chromium over inherited pipes, which `ip netns exec` keeps: pass the path
    as `chromium(executable=...)`. Inside the namespace the server is not on localhost, so the
    page is not a secure context unless Chromium is told (`insecure_origin_args`). `cgroup_procs`:
    a cgroup's `cgroup.procs` (tests.harness.cgroups.CpuQuota) the wrapper joins first, so Chromium
    and every process it starts run in that group from their first instruction.
    """
    wrapper = folder / f"chromium-{namespace.name}"
    join = f"echo $$ > {cgroup_procs}\n" if cgroup_procs is not None else ""
    wrapper.write_text(f'#!/bin/sh\n{join}exec ip netns exec {namespace.name} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def insecure_origin_args(origin: str) -> tuple[str, ...]:
    """Tests only: let an http:// origin that is not localhost use the camera and microphone."""
    return (f"--unsafely-treat-insecure-origin-as-secure={origin}",)


PAGE_LOAD_REPORT = """() => ({
  readyState: document.readyState,
  resources: performance.getEntriesByType("resource").map((entry) => [
    entry.name.replace(location.origin, ""), entry.responseStatus ?? null, Math.round(entry.duration)]),
})"""


def wait_until_ready(page) -> None:
    """Wait for `body[data-ready='true']`; when it does not come, fail with what the page loaded (each
    file's status and time), so that a page that did not start says why."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector("body[data-ready='true']")
    except PlaywrightTimeout:
        raise AssertionError(f"the page did not become ready: {page.evaluate(PAGE_LOAD_REPORT)}") from None


def run_check(page, timeout_ms: int = CHECK_TIMEOUT_MS) -> str:
    """Press Start and wait until the page says done or error; returns that state."""
    wait_until_ready(page)
    page.click("#start")
    # a selector, not wait_for_function: the page's CSP (no 'unsafe-eval') refuses evaluated strings
    page.wait_for_selector("body[data-state='done'], body[data-state='error']", state="attached", timeout=timeout_ms)
    return page.get_attribute("body", "data-state")


def result(page) -> dict | None:
    return page.evaluate("window.netcheckResult ?? null")


SCREEN_WIDTHS = {1280: 900, 360: 740}
"""Viewport widths the page is shown at (a laptop, a small phone) and their heights."""


def overflows_horizontally(page) -> bool:
    """True when something is wider than the viewport (cut off, or only reachable by scrolling sideways)."""
    return page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")


def main(argv: list[str]) -> None:
    """`python -m tests.harness.browser screenshots DIR [WIDTH ...]`: each state of the page at 1280 and 360 px.

    Against a real `netcheck serve` on loopback with Chromium's fake devices. The audio-only/phone
    verdict is the real server's answer to a real check with the recommendation, cue levels and
    advice replaced by those of a lossy path (a loopback link has no loss to show).
    """
    import json
    import sys
    import tempfile

    from netcheck.server.app import AV_SESSIONS_PER_CLIENT
    from tests.harness.servers import start_serve, stop, subprocess_env

    if len(argv) < 2 or argv[0] != "screenshots":
        sys.exit("usage: python -m tests.harness.browser screenshots DIR [WIDTH ...]")
    widths = [int(width) for width in argv[2:]] or list(SCREEN_WIDTHS)
    out = Path(argv[1])

    def call_admitted(response) -> bool:
        return response.url.endswith("/v1/av/offer") and response.status == 200

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        for width in widths:
            height = SCREEN_WIDTHS.get(width, 800)
            server = start_serve(env=subprocess_env(NETCHECK_HOME=folder + f"/home{width}"))
            try:
                with chromium() as browser:  # marked files would make the upstream's lip sync arbitrary
                    context = browser.new_context(viewport={"width": width, "height": height})

                    def shot(page, name: str) -> None:
                        path = out / f"{name}-{width}.png"
                        page.screenshot(path=str(path), full_page=True)
                        print(path, "overflows" if overflows_horizontally(page) else "fits")

                    page = context.new_page()
                    page.goto(f"{server.http_url}/check")
                    page.wait_for_selector("body[data-ready='true']")
                    with page.expect_response(call_admitted):
                        page.click("#start")
                    others = []
                    for _ in range(AV_SESSIONS_PER_CLIENT - 1):  # the other calls one address may have at once
                        other = context.new_page()
                        other.goto(f"{server.http_url}/check")
                        other.wait_for_selector("body[data-ready='true']")
                        with other.expect_response(call_admitted):
                            other.click("#start")
                        others.append(other)
                    busy = context.new_page()
                    busy.goto(f"{server.http_url}/check")
                    busy.wait_for_selector("body[data-ready='true']")
                    busy.click("#start")
                    busy.wait_for_selector("#busy[data-busy='true']", timeout=CHECK_TIMEOUT_MS)
                    shot(busy, "6-busy")
                    for waiting in (page, *others, busy):
                        waiting.wait_for_selector("body[data-state='done'], body[data-state='error']", state="attached",
                                                  timeout=2 * CHECK_TIMEOUT_MS)
                        waiting.close()

                    page = context.new_page()
                    page.goto(f"{server.http_url}/check")
                    page.wait_for_selector("body[data-ready='true']")
                    page.click("#start")
                    page.wait_for_selector("body[data-state='devices'] #mic-db:not(:empty)", state="attached")
                    shot(page, "1-devices")
                    page.wait_for_selector("body[data-state='voice']", state="attached", timeout=CHECK_TIMEOUT_MS)
                    shot(page, "2-call")
                    page.wait_for_selector("body[data-state='done'], body[data-state='error']", state="attached",
                                           timeout=CHECK_TIMEOUT_MS)
                    shot(page, "3-verdict-video")

                    stop(server.process)  # a fresh server: one address may store 5 checks, then one per 20 s
                    server = start_serve(env=subprocess_env(NETCHECK_HOME=folder + f"/home{width}b"))
                    phone = context.new_page()

                    def lossy(route) -> None:
                        response = route.fetch()
                        answer = response.json()
                        answer.update(recommendation="phone", video_setting="audio_only", advice=[
                            "8 % of your voice's packets are lost on the way to the clinic: words will drop out. "
                            "Move closer to the Wi-Fi router or use a cable, and use the phone for this session.",
                        ])
                        for cue, level in (("facial_expression", "poor"), ("vocal_tone", "poor"), ("lip_sync", "fair")):
                            answer["cues"][cue]["level"] = level
                        route.fulfill(response=response, body=json.dumps(answer))

                    phone.route("**/v1/checks", lossy)
                    phone.goto(f"{server.http_url}/check")
                    run_check(phone)
                    shot(phone, "4-verdict-phone")
                    context.close()
                with chromium(fake_ui=False) as browser:
                    context = browser.new_context(viewport={"width": width, "height": height}, permissions=[])
                    page = context.new_page()
                    page.goto(f"{server.http_url}/check")
                    run_check(page)
                    shot(page, "5-device-denied")
                    context.close()
            finally:
                stop(server.process)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
