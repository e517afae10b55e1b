"""Concurrent A/V checks on one `netcheck serve` (issue 16): what N calls at once cost the node, and
whether each call still measures what a lone call measures.

    python benchmarks/av_capacity.py [--calls 1,2,3,4,5] [--runs 3]

Each step starts N `netcheck probe av` processes at once (640x360@30, 5 s after the first frame),
each with a check token of its own session (so each is its own client for the fair shares, as N
households would be), against one server with a secret. Per step: the node's CPU over the step (% of
one core, from /proc), each call's frame rate both ways, freezes and lip-sync error (the server's
audio offset is 0, so the skew is the error), how many were told to wait (429: the node's A/V total
is MAX_SESSIONS = 4) and how long the last one took. Prints a markdown table; median (min…max) of
the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from netcheck.tokens import create_token  # noqa: E402
from tests.harness.servers import start_serve, stop, subprocess_env  # noqa: E402

SECRET = "av-capacity-benchmark-secret-0123456789"


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def step(server_url: str, server_pid: int, calls: int, step_index: int) -> dict:
    """N probes at once; the node's CPU and each probe's figures."""
    before_s, started_s = cpu_s(server_pid), time.monotonic()
    processes = []
    for index in range(calls):
        token = create_token(SECRET.encode(), f"av-{step_index}-{index}", "check", 600)
        env = subprocess_env(NETCHECK_TOKEN=token, NETCHECK_HOME=f"/tmp/av-capacity-{os.getpid()}-{index}")
        processes.append(subprocess.Popen([sys.executable, str(REPO / "cli.py"), "probe", "av", "--server", server_url,
                                           "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env))
    outputs = [process.communicate(timeout=180) for process in processes]
    elapsed_s = time.monotonic() - started_s
    node_cpu_pct = 100 * (cpu_s(server_pid) - before_s) / elapsed_s
    results = []
    for stdout, stderr in outputs:
        try:
            results.append(json.loads(stdout))
        except json.JSONDecodeError:
            results.append({"status": "error", "error": stderr.decode()[-200:]})
    waited = sum(b"busy" in stderr.lower() for _, stderr in outputs)
    return {"calls": calls, "elapsed_s": elapsed_s, "node_cpu_pct": node_cpu_pct, "results": results, "waited": waited}


def spread(values: list[float], digits: int = 0) -> str:
    if not values:
        return "–"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}…{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", default="1,2,3,4,5")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    steps = [int(calls) for calls in args.calls.split(",")]
    server = start_serve(env=subprocess_env(NETCHECK_SECRET=SECRET))
    by_calls: dict[int, list[dict]] = {calls: [] for calls in steps}
    try:
        for run in range(args.runs):
            for calls in steps:
                by_calls[calls].append(step(server.http_url, server.process.pid, calls, run * 100 + calls))
                time.sleep(2)  # the node's CPU sample and the ended sessions settle
    finally:
        stop(server.process)
    print("| calls at once | node CPU % of a core | per call % | fps up | fps down | freezes (all calls) "
          "| lip-sync error ms, worst direction | calls ok | told to wait | step took s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for calls, measured in by_calls.items():
        ok = [r for m in measured for r in m["results"] if r.get("status") == "ok"]
        fps_up = [r["upstream"]["video_fps"] for r in ok if r["upstream"].get("video_fps") is not None]
        fps_down = [r["downstream"]["video_fps"] for r in ok if r["downstream"].get("video_fps") is not None]
        freezes = sum((r["upstream"].get("video_freezes") or 0) + (r["downstream"].get("video_freezes") or 0) for r in ok)
        skews = [max((abs(r[d]["av_skew_ms"]) for d in ("upstream", "downstream") if r[d].get("av_skew_ms") is not None),
                     default=None) for r in ok]
        cpu = [m["node_cpu_pct"] for m in measured]
        print(f"| {calls} | {spread(cpu)} | {statistics.median(cpu) / calls:.0f} | {spread(fps_up, 1)} | "
              f"{spread(fps_down, 1)} | {freezes} | {spread([s for s in skews if s is not None], 1)} | "
              f"{len(ok)}/{calls * len(measured)} | {sum(m['waited'] for m in measured)} | "
              f"{spread([m['elapsed_s'] for m in measured], 1)} |", flush=True)


if __name__ == "__main__":
    main()
