"""Throughput and bufferbloat against tbf caps in network namespaces (needs root).

    python benchmarks/throughput_accuracy.py [--duration 6s]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.netns import ClientNamespace, Tbf  # noqa: E402
from tests.test_throughput import TCP_GOODPUT, throughput_in  # noqa: E402

CASES = [
    ("8 down / 2 up, 100 ms queue", Tbf(2000), Tbf(8000)),
    ("20 down / 5 up, 100 ms queue", Tbf(5000), Tbf(20000)),
    ("1 down / 0.5 up, 100 ms queue", Tbf(500), Tbf(1000)),
    ("8 / 2, 1 s queue (bloated)", Tbf(2000, limit_bytes=250_000), Tbf(8000, limit_bytes=1_000_000)),
    ("8 / 8, 6 kB queue (shallow)", Tbf(8000, burst_bytes=4000, limit_bytes=6000),
     Tbf(8000, burst_bytes=4000, limit_bytes=6000)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", default="6s")
    duration = parser.parse_args().duration
    print("| link (Mbit/s) | down: cap × goodput → measured | up: cap × goodput → measured | idle RTT ms "
          "| loaded down / up ms | bufferbloat ms |\n|---|---|---|---:|---|---:|")
    for name, up, down in CASES:
        with ClientNamespace(up=up, down=down) as namespace, tempfile.TemporaryDirectory() as home:
            code, result, stderr = throughput_in(namespace, Path(home), "--duration", duration)
        if code != 0:
            print(f"| {name} | failed: {stderr.strip()[-200:]} |")
            continue
        expect_down, expect_up = down.rate_kbit / 1000 * TCP_GOODPUT, up.rate_kbit / 1000 * TCP_GOODPUT
        print(f"| {name} | {expect_down:.2f} → {result['download_mbps']:.2f} "
              f"({100 * (result['download_mbps'] / expect_down - 1):+.1f} %) | {expect_up:.2f} → "
              f"{result['upload_mbps']:.2f} ({100 * (result['upload_mbps'] / expect_up - 1):+.1f} %) | "
              f"{result['idle_rtt_ms']} | {result['loaded_rtt_down_ms']} / {result['loaded_rtt_up_ms']} | "
              f"{result['bufferbloat_ms']} |")


if __name__ == "__main__":
    main()
