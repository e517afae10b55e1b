"""Throughput and bufferbloat against tbf caps in network namespaces (needs root).

    python benchmarks/throughput_accuracy.py [--duration 6s] [--runs 5]

Each throughput cell is the median of the runs with the range of their errors, bufferbloat the
median with its range: one run says little about a TCP measurement on a full queue.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness.netns import ClientNamespace, Tbf  # noqa: E402
from tests.harness.throughput_runs import TCP_GOODPUT, throughput_in  # noqa: E402

CASES = [
    ("8 down / 2 up, 100 ms queue", Tbf(2000), Tbf(8000)),
    ("20 down / 5 up, 100 ms queue", Tbf(5000), Tbf(20000)),
    ("1 down / 0.5 up, 100 ms queue", Tbf(500), Tbf(1000)),
    ("8 / 2, 1 s queue (bloated)", Tbf(2000, limit_bytes=250_000), Tbf(8000, limit_bytes=1_000_000)),
    ("8 / 8, 6 kB queue (shallow)", Tbf(8000, burst_bytes=4000, limit_bytes=6000),
     Tbf(8000, burst_bytes=4000, limit_bytes=6000)),
]


def error_pct(measured: float, expected: float) -> float:
    return 100 * (measured / expected - 1)


def cell(expected: float, measured: list[float]) -> str:
    """`expected → median (error %, range of errors)`."""
    errors = [error_pct(value, expected) for value in measured]
    spread = f", {min(errors):+.1f}…{max(errors):+.1f}" if len(measured) > 1 else ""
    median = statistics.median(measured)
    return f"{expected:.2f} → {median:.2f} ({error_pct(median, expected):+.1f} %{spread})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", default="6s")
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    print("| link (Mbit/s) | down: cap × goodput → measured | up: cap × goodput → measured | idle RTT ms "
          "| loaded down / up ms | bufferbloat ms |\n|---|---|---|---:|---|---:|")
    for name, up, down in CASES:
        results = []
        for _ in range(arguments.runs):
            with ClientNamespace(up=up, down=down) as namespace, tempfile.TemporaryDirectory() as home:
                code, result, stderr = throughput_in(namespace, Path(home), "--duration", arguments.duration)
            if code != 0:
                print(f"| {name} | failed: {stderr.strip()[-200:]} |")
                continue
            results.append(result)
        if not results:
            continue
        expect_down, expect_up = down.rate_kbit / 1000 * TCP_GOODPUT, up.rate_kbit / 1000 * TCP_GOODPUT

        def median_of(key: str) -> str:
            return f"{statistics.median(result[key] for result in results):.1f}"

        def spread_of(key: str) -> str:
            values = [result[key] for result in results]
            return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"

        print(f"| {name} | {cell(expect_down, [r['download_mbps'] for r in results])} "
              f"| {cell(expect_up, [r['upload_mbps'] for r in results])} | {median_of('idle_rtt_ms')} "
              f"| {median_of('loaded_rtt_down_ms')} / {median_of('loaded_rtt_up_ms')} | {spread_of('bufferbloat_ms')} |",
              flush=True)


if __name__ == "__main__":
    main()
