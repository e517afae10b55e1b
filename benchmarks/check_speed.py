"""How long a client waits for a verdict: `netcheck check` (default and --quick) and each probe, on loopback.

Runs the real CLI as a subprocess against a real `netcheck serve`, several times, and prints a
markdown table (wall time from process start to exit, interpreter start-up included).

    python benchmarks/check_speed.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness.servers import start_serve, stop, subprocess_env  # noqa: E402

TARGETS_S = {"check --quick": 3.0, "check": 12.0, "check --no-av": 12.0, "check --local": 15.0, "--help": 0.5,
             "probe udp": 4.5, "probe av": 8.0, "probe throughput": 12.0, "probe reach": 3.0, "probe system": 3.5,
             "agent --once": 7.0}
"""Probes: their default measuring time (udp 3 s, av 5 s, throughput up to 4 s a direction, system 2 s) plus start-up."""


def time_command(args: list[str], env: dict[str, str], runs: int) -> list[float]:
    durations = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(REPO / "cli.py"), *args], capture_output=True, env=env)
        durations.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(f"{args} exited {result.returncode}: {result.stderr.decode()}")
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    server = start_serve()
    try:
        with tempfile.TemporaryDirectory() as home:
            env = subprocess_env(NETCHECK_HOME=home)
            cases = {
                "check --quick": ["check", "--server", server.http_url, "--quick", "--json"],
                "check": ["check", "--server", server.http_url, "--json"],
                "check --no-av": ["check", "--server", server.http_url, "--json", "--no-av"],
                "check --local": ["check", "--local", "--json"],
                "--help": ["--help"],
                "probe udp": ["probe", "udp", server.udp_target, "--server", server.http_url, "--json"],
                "probe av": ["probe", "av", "--server", server.http_url, "--json"],
                "probe throughput": ["probe", "throughput", "--server", server.http_url, "--json"],
                "probe reach": ["probe", "reach", "--server", server.http_url, "--json"],
                "probe system": ["probe", "system", "--json"],
                "agent --once": ["agent", "--server", server.http_url, "--once", "--av-every", "0"],
            }
            print("| command | runs | median s | min–max s | target s |\n|---|---:|---:|---:|---:|")
            for name, args in cases.items():
                durations = time_command(args, env, runs)
                print(f"| `netcheck {name}` | {runs} | {statistics.median(durations):.2f} | "
                      f"{min(durations):.2f}–{max(durations):.2f} | ≤ {TARGETS_S[name]:g} |", flush=True)
    finally:
        stop(server.process)


if __name__ == "__main__":
    main()
