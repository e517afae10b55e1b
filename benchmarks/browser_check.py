"""The browser check page (issue 13) beside the CLI: time to a verdict, and lip sync against the truth.

    python benchmarks/browser_check.py [--runs 5] [--lip-sync-runs 3]

Time: the page in headless Chromium (Debian `chromium`, fake devices) against a real `netcheck serve`
on loopback, from the click on "Start the check" to `body[data-state='done']`; beside it `netcheck
check` as a subprocess against the same kind of server, process start to exit. A fresh server per
run: the server stores five checks from one address, then one per 20 s (issue 15).

Lip sync: the server shifts its audio markers by N ms (`/check?audio_offset_ms=N`; `netcheck probe
av --audio-offset-ms N`), so a perfect receiver reports N. The page's figure is the downstream skew
it posts (the browser's own playout in the loop); the probe's is its downstream `av_skew_ms` (aiortc's
receiver, 640x360@30 like the page's call). Prints markdown tables: median (min…max) over the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness.browser import chromium, result, run_check  # noqa: E402
from tests.harness.servers import start_serve, stop, subprocess_env  # noqa: E402

OFFSETS_MS = (-150, -60, 40, 120)
"""Issue 13, Must show 2."""


def page_check(query: str = "") -> tuple[float, dict, dict]:
    """One check by the page on a fresh server: (seconds from the click to done, posted body, answer)."""
    with tempfile.TemporaryDirectory() as home:
        server = start_serve(env=subprocess_env(NETCHECK_HOME=home))
        try:
            with chromium() as browser:
                page = browser.new_page()
                posted: list[dict] = []
                page.on("request", lambda request: posted.append(json.loads(request.post_data or "null"))
                        if request.method == "POST" and request.url.endswith("/v1/checks") else None)
                page.goto(f"{server.http_url}/check{query}")
                page.wait_for_selector("body[data-ready='true']")
                started_s = time.monotonic()
                state = run_check(page)
                elapsed_s = time.monotonic() - started_s
                if state != "done" or not posted:
                    raise SystemExit(f"the page ended in {state!r}: {page.inner_text('#error')}")
                return elapsed_s, posted[-1], result(page)
        finally:
            stop(server.process)


def cli(args: list[str]) -> tuple[float, dict]:
    """`netcheck ARGS --server URL --json` on a fresh server: (seconds process start to exit, its JSON)."""
    with tempfile.TemporaryDirectory() as home:
        server = start_serve(env=subprocess_env(NETCHECK_HOME=home))
        try:
            started_s = time.perf_counter()
            done = subprocess.run([sys.executable, str(REPO / "cli.py"), *args, "--server", server.http_url, "--json"],
                                  capture_output=True, env=subprocess_env(NETCHECK_HOME=home))
            elapsed_s = time.perf_counter() - started_s
            if not done.stdout:
                raise SystemExit(f"{args} exited {done.returncode}: {done.stderr.decode()}")
            return elapsed_s, json.loads(done.stdout)
        finally:
            stop(server.process)


def spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}…{max(values):.{digits}f})"


def time_to_verdict(runs: int) -> None:
    page_s, page_verdicts, cli_s, cli_verdicts = [], [], [], []
    for _ in range(runs):
        elapsed_s, _, answer = page_check()
        page_s.append(elapsed_s)
        page_verdicts.append(answer["recommendation"])
        elapsed_s, report = cli(["check"])
        cli_s.append(elapsed_s)
        cli_verdicts.append(report["recommendation"])
    print("| client | runs | time to verdict, s: median (min…max) | verdicts |\n|---|---:|---:|---|")
    print(f"| page in headless Chromium (click → done) | {runs} | {spread(page_s)} | {', '.join(page_verdicts)} |")
    print(f"| `netcheck check` (process start → exit) | {runs} | {spread(cli_s)} | {', '.join(cli_verdicts)} |",
          flush=True)


def lip_sync(runs: int) -> None:
    print("\n| audio offset ms | page's skew ms | page's error ms | `probe av` skew ms | `probe av` error ms |\n"
          "|---:|---:|---:|---:|---:|")
    for offset_ms in OFFSETS_MS:
        page_skews, probe_skews = [], []
        for _ in range(runs):
            _, body, _ = page_check(f"?audio_offset_ms={offset_ms}")
            page_skews.append(body["downstream"]["av_skew_ms"])
            _, report = cli(["probe", "av", "--audio-offset-ms", str(offset_ms)])
            probe_skews.append(report["downstream"]["av_skew_ms"])
        print(f"| {offset_ms:+d} | {spread(page_skews)} | {spread([s - offset_ms for s in page_skews])} | "
              f"{spread(probe_skews)} | {spread([s - offset_ms for s in probe_skews])} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="checks timed per client")
    parser.add_argument("--lip-sync-runs", type=int, default=3, help="runs per offset and receiver; 0 skips")
    args = parser.parse_args()
    time_to_verdict(args.runs)
    if args.lip_sync_runs:
        lip_sync(args.lip_sync_runs)


if __name__ == "__main__":
    main()
