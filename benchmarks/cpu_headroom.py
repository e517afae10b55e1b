"""What the node's headroom (netcheck/server/headroom.py) reads beside other load, and held to a quota:
the figures behind its limits (docs/design-notes.md, "The node's own CPU"; issue 23).

    python benchmarks/cpu_headroom.py [--seconds 6]     (root, for the cgroup quotas)

Each scenario runs a child process whose event loop does 25 % of a core in 1 ms callbacks (a node's
replies, frames and timers) while the node's own `CpuHeadroom` samples it with the real readers; the
burners are `python -c "while True: pass"`, one per core. Prints a markdown table: each figure's
median (min–max) over the samples after the first, and how many samples were short of CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # so `netcheck` and `tests.*` import from a checkout

LOOP_SHARE = 0.25
"""The child's loop: 25 % of a core, a node serving a call or two."""
SCENARIOS: list[tuple[str, int | None, float | None]] = [
    ("nothing", None, None),
    ("a `nice 19` burner per core", 19, None),
    ("a `nice 0` burner per core", 0, None),
    ("a cgroup quota of 0.2 core", None, 0.2),
    ("a cgroup quota of 0.05 core", None, 0.05),
]


async def child(seconds: float) -> None:
    """The measured 'node': busy LOOP_SHARE of a core, sampled once a second, one JSON line per sample."""
    from netcheck.server.headroom import CpuHeadroom

    headroom = CpuHeadroom()
    task = asyncio.ensure_future(headroom.run(lambda load: print(json.dumps(load.__dict__), flush=True)))
    end_s = time.monotonic() + seconds
    while time.monotonic() < end_s:
        spin_until = time.monotonic() + 0.001
        while time.monotonic() < spin_until:
            pass
        await asyncio.sleep(0.001 * (1 - LOOP_SHARE) / LOOP_SHARE)
    task.cancel()


def run_scenario(nice: int | None, quota_cores: float | None, seconds: float) -> list[dict]:
    from tests.harness.cgroups import CpuQuota

    burners = [subprocess.Popen(["nice", "-n", str(nice), sys.executable, "-c", "while True: pass"])
               for _ in range(os.cpu_count() or 2)] if nice is not None else []
    try:
        time.sleep(0.5 if burners else 0.0)
        command = [sys.executable, __file__, "--child", str(seconds)]
        if quota_cores is None:
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        else:
            with CpuQuota(quota_cores) as quota:
                process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                quota.add(process.pid)
                output = process.communicate()[0]
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    return [json.loads(line) for line in output.splitlines()][1:]  # the first second holds the start-up


def spread(values: list[float], unit: str) -> str:
    return f"{statistics.median(values):g}{unit} ({min(values):g}–{max(values):g})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.child))
        return
    print("| beside the loop | loop CPU | process CPU of what it may use | wait per run | throttled | loop lag "
          "| short of CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, nice, quota_cores in SCENARIOS:
        loads = run_scenario(nice, quota_cores, args.seconds)
        print(f"| {name} | {spread([x['loop_cpu_pct'] for x in loads], ' %')} "
              f"| {spread([x['process_cpu_pct'] for x in loads], ' %')} "
              f"| {spread([x['wait_per_run_ms'] for x in loads], ' ms')} "
              f"| {spread([x['throttled_pct'] for x in loads], ' %')} "
              f"| {spread([x['loop_lag_ms'] for x in loads], ' ms')} "
              f"| {sum(x['short_of_cpu'] for x in loads)} of {len(loads)} |", flush=True)


if __name__ == "__main__":
    main()
