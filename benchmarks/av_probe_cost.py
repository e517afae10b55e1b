"""Wall time, CPU and peak memory of one `netcheck probe av` run, client process only.

The real CLI runs as a subprocess against a real `netcheck serve` on loopback; os.wait4 gives the
client's own CPU time and peak RSS.

    python benchmarks/av_probe_cost.py [--runs 5]

Each cell: median (min–max) over the runs.
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

from tests.harness.servers import start_serve, stop, subprocess_env  # noqa: E402

CASES = {
    "default (640x360@30, 5 s)": [],
    "check's (1280x720@30, 4 s)": ["--video", "1280x720@30", "--duration", "4s"],
}


def one_run(server_url: str, extra: list[str]) -> tuple[float, float, float, float]:
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "probe", "av", "--server", server_url,
                                "--json", *extra], stdout=subprocess.PIPE, env=subprocess_env())
    output = process.stdout.read() if process.stdout else b""
    _, status, usage = os.wait4(process.pid, 0)
    wall_s = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"probe failed: {output[:300]!r}")
    first_frame_ms = json.loads(output)["time_to_first_frame_ms"]
    return wall_s, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, first_frame_ms


def cell(values: list[float], digits: int) -> str:
    """median (min–max)"""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    server = start_serve()
    try:
        print("| probe | runs | wall s | first frame ms | CPU s | CPU % of one core | peak RSS MiB |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for name, extra in CASES.items():
            results = [one_run(server.http_url, extra) for _ in range(runs)]
            wall, cpu, rss, first = (list(column) for column in zip(*results))
            share = [100 * c / w for c, w in zip(cpu, wall)]
            print(f"| {name} | {runs} | {cell(wall, 2)} | {cell(first, 0)} | {cell(cpu, 2)} | {cell(share, 0)} "
                  f"| {cell(rss, 0)} |", flush=True)
    finally:
        stop(server.process)


if __name__ == "__main__":
    main()
