"""What an open client tab costs (issue 14, Must show 3): the server's CPU per tab, and the tab's own.

    python benchmarks/session_tabs.py [--tabs 1 5 10] [--seconds 30]

A real `netcheck serve` (with a secret, so the hub is on) on loopback, and headless Chromium (Debian
`chromium`) opening N client tabs, each `/session/sK/client#token=…` of its own session (one leg per
session), at the defaults (5 s windows, 10 voice packets a second, the 320x180 test card both ways).
Once every tab is measuring, the CPU time of the server process and of all Chromium processes is
read over `--seconds`, as % of one core (psutil: user + system), less what each used idle (the
server with no tab, Chromium with one blank page). Also the server's RSS, and whether every window
of every tab reached the hub (`netcheck_server`-style counters are not exposed, so: the windows the
tabs were answered for). Prints a markdown table.

Both run on the same machine here, so Chromium's encoding competes with the server for the cores;
the server's CPU-busy gate (85 % of all cores) may make a tab wait (429) before its leg opens.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from netcheck.tokens import create_token  # noqa: E402
from tests.harness.browser import CHROMIUM, chromium  # noqa: E402
from tests.harness.servers import start_serve, stop, subprocess_env  # noqa: E402

SETTLE_S = 5.0
OPEN_TIMEOUT_MS = 180_000
"""A tab may wait for the server's CPU gate (429, retried for up to 90 s) before its leg opens."""


def chromium_processes() -> list[psutil.Process]:
    """Every Chromium process started under this one (browser, renderers, GPU, network, …)."""
    found = []
    for process in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "chrom" in process.name() or CHROMIUM in " ".join(process.cmdline()[:1]):
                found.append(process)
        except psutil.Error:
            continue
    return found


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def core_pct(read, seconds: float) -> float:
    """% of one core used by what `read()` counts, over `seconds`."""
    start = read()
    time.sleep(seconds)
    return 100.0 * (read() - start) / seconds


def measure(tabs: int, seconds: float) -> dict[str, float]:
    secret = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as home:
        server = start_serve(env=subprocess_env(NETCHECK_SECRET=secret, NETCHECK_HOME=home))
        process = psutil.Process(server.process.pid)
        try:
            time.sleep(2.0)
            server_idle = core_pct(lambda: cpu_seconds([process]), seconds / 2)
            with chromium() as browser:
                blank = browser.new_page()
                blank.goto("about:blank")
                time.sleep(2.0)
                chromium_idle = core_pct(lambda: cpu_seconds(chromium_processes()), seconds / 2)
                pages = []
                windows: list[int] = []
                for index in range(tabs):
                    token = create_token(secret.encode(), f"s{index + 1}", "client", 3600)
                    page = browser.new_page()
                    page.on("response", lambda response: windows.append(1)
                            if response.url.endswith("/legs/client/window") and response.status == 200 else None)
                    page.goto(f"{server.http_url}/session/s{index + 1}/client#token={token}")
                    pages.append(page)
                for page in pages:
                    page.wait_for_selector("body[data-state='measuring']", state="attached", timeout=OPEN_TIMEOUT_MS)
                time.sleep(SETTLE_S)
                windows.clear()
                server_cpu_start, chromium_cpu_start = cpu_seconds([process]), cpu_seconds(chromium_processes())
                started_s = time.monotonic()
                time.sleep(seconds)
                elapsed_s = time.monotonic() - started_s
                server_pct = 100.0 * (cpu_seconds([process]) - server_cpu_start) / elapsed_s
                chromium_pct = 100.0 * (cpu_seconds(chromium_processes()) - chromium_cpu_start) / elapsed_s
                rss_mb = process.memory_info().rss / 1e6
                weak = sum(page.get_attribute("#badge", "data-connection") != "ok" for page in pages)
                expected_windows = tabs * elapsed_s / 5.0
        finally:
            stop(server.process)
    return {
        "tabs": tabs, "server_pct": server_pct, "server_idle_pct": server_idle,
        "server_per_tab_pct": (server_pct - server_idle) / tabs, "rss_mb": rss_mb,
        "chromium_pct": chromium_pct, "chromium_per_tab_pct": (chromium_pct - chromium_idle) / tabs,
        "windows_pct": 100.0 * len(windows) / expected_windows, "weak": weak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tabs", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    print(f"{psutil.cpu_count()} cores; {args.seconds:g} s per row; % of one core")
    print()
    print("| tabs | server CPU | server CPU per tab | server RSS | Chromium CPU | Chromium CPU per tab | windows answered | tabs not 'OK' |")
    print("|---|---|---|---|---|---|---|---|")
    for tabs in args.tabs:
        row = measure(tabs, args.seconds)
        print(f"| {row['tabs']} | {row['server_pct']:.1f} % (idle {row['server_idle_pct']:.1f} %) "
              f"| {row['server_per_tab_pct']:.1f} % | {row['rss_mb']:.0f} MB | {row['chromium_pct']:.1f} % "
              f"| {row['chromium_per_tab_pct']:.1f} % | {row['windows_pct']:.0f} % | {row['weak']} |", flush=True)


if __name__ == "__main__":
    main()
