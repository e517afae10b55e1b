"""The server's CPU per open therapist panel (/session/{id}), with real panels in headless Chromium.

One `netcheck serve` (in-memory hub) on loopback; N sessions whose two legs each post a window summary
every 5 s (as agents or client tabs do). First the posting alone is measured, then the same with one
panel open per session (N Chromium pages, one browser): each panel holds the session's SSE stream,
receives both legs' summaries, and asks for the end-to-end estimate (POST .../estimate) when they
change. The node's CPU is read from /proc (user + system time of the server process), Chromium's from
its processes (all pages together). Prints a markdown table.

    python benchmarks/session_panels.py [--panels 20] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from tempfile import TemporaryDirectory

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.hub_capacity import WINDOW_S, summary  # noqa: E402
from netcheck.tokens import create_token  # noqa: E402
from tests.harness.browser import chromium  # noqa: E402
from tests.harness.servers import start_serve, stop, subprocess_env  # noqa: E402

SECRET = secrets.token_urlsafe(24)
LEGS = ("client", "therapist")


def token(session_id: str, role: str) -> str:
    return create_token(SECRET.encode(), session_id, role, 3600)


class Legs(threading.Thread):
    """Both legs of every session post a summary each window, spread over the window."""

    def __init__(self, url: str, sessions: list[str]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.sessions = sessions
        self.stopping = threading.Event()
        self.posted = 0
        self.failed = 0

    def run(self) -> None:
        index = 0
        posts = [(session_id, leg) for session_id in self.sessions for leg in LEGS]
        while not self.stopping.is_set():
            started_s = time.monotonic()
            for number, (session_id, leg) in enumerate(posts):
                event = summary(index, time.time())
                event["at"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
                self.post(session_id, leg, event)
                self.stopping.wait(max(0.0, started_s + (number + 1) * WINDOW_S / len(posts) - time.monotonic()))
            index += 1

    def post(self, session_id: str, leg: str, event: dict) -> None:
        request = urllib.request.Request(f"{self.url}/v1/sessions/{session_id}/events", method="POST",
                                         data=json.dumps({"events": [event]}).encode(),
                                         headers={"Authorization": f"Bearer {token(session_id, leg)}"})
        try:
            with urllib.request.urlopen(request, timeout=5):
                self.posted += 1
        except OSError:
            self.failed += 1


def cpu_s(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def measure(processes: list[psutil.Process], seconds: float) -> float:
    """CPU of `processes` over `seconds` of wall time, in % of one core."""
    before_s, started_s = cpu_s(processes), time.monotonic()
    time.sleep(seconds)
    return (cpu_s(processes) - before_s) / (time.monotonic() - started_s) * 100.0


def chromium_processes() -> list[psutil.Process]:
    return [child for child in psutil.Process().children(recursive=True) if "chrom" in child.name().lower()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panels", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    sessions = [f"bench-panel-{index}" for index in range(args.panels)]
    with TemporaryDirectory() as home:
        server = start_serve(env=subprocess_env(NETCHECK_SECRET=SECRET, NETCHECK_HOME=home))
        node = psutil.Process(server.process.pid)
        legs = Legs(server.http_url, sessions)
        try:
            legs.start()
            time.sleep(WINDOW_S)  # one window to warm up
            posting_only = measure([node], args.seconds)
            with chromium() as browser:
                pages = []
                opened_s = time.monotonic()
                before_open = cpu_s([node])
                for session_id in sessions:
                    page = browser.new_context().new_page()
                    page.goto(f"{server.http_url}/session/{session_id}#token={token(session_id, 'therapist')}")
                    pages.append(page)
                for page in pages:
                    page.wait_for_selector("body[data-live='yes']", timeout=30_000)
                opening_cpu_s = cpu_s([node]) - before_open
                opening_s = time.monotonic() - opened_s
                time.sleep(WINDOW_S)
                browsers = chromium_processes()
                before_browser = cpu_s(browsers)
                with_panels = measure([node], args.seconds)
                browser_pct = (cpu_s(browsers) - before_browser) / args.seconds * 100.0
                posted, failed = legs.posted, legs.failed  # before the node stops under the last posts
                live = sum(page.get_attribute("body", "data-live") == "yes" for page in pages)
                estimates = sum(page.locator("#estimate-figures dt").count() > 0 for page in pages)
        finally:
            legs.stopping.set()
            stop(server.process)
    per_panel = (with_panels - posting_only) / args.panels
    print(f"{args.panels} sessions, 2 legs posting every {WINDOW_S:g} s ({posted} posts, {failed} failed); "
          f"{live}/{args.panels} panels live at the end, {estimates} showing the estimate; "
          f"opening all panels took {opening_s:.1f} s and {opening_cpu_s:.2f} s of the node's CPU\n")
    print("| what | server CPU (% of one core) |")
    print("|---|---|")
    print(f"| {args.panels} sessions posting, no panel | {posting_only:.2f} |")
    print(f"| the same with {args.panels} panels open | {with_panels:.2f} |")
    print(f"| **per open panel** | **{per_panel:.3f}** |")
    print(f"| Chromium, all {args.panels} panels together | {browser_pct:.1f} |")


if __name__ == "__main__":
    main()
