"""netcheck vs irtt accuracy against the impairment relay: a markdown table on stdout.

    python benchmarks/accuracy.py [--seed 4] [--duration 5] [--profile 60ms-3pct ...]

Runs the same profiles and seed as tests/test_accuracy.py (one `netcheck serve`, one `irtt server`,
a fresh relay per run) and reports, per profile and metric, each tool's figure, the relay's truth
for that run and the absolute error. Needs irtt on PATH.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # so `tests.*` imports from a checkout

from tests.harness.impairment import PROFILES  # noqa: E402
from tests.harness.irtt_runner import IrttServer  # noqa: E402
from tests.harness.udp_accuracy import (  # noqa: E402
    DURATION_S, METRICS, SEED, NetcheckServer, Run, errors, measure_irtt, measure_netcheck, tolerance,
)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def table(pairs: list[tuple[Run, Run]]) -> str:
    lines = [
        "| profile | metric | truth (nc run) | netcheck | netcheck error | truth (irtt run) | irtt | irtt error | tolerance |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ours, theirs in pairs:
        our_err, their_err = errors(ours.figures, ours.truth), errors(theirs.figures, theirs.truth)
        for metric in METRICS:
            truth = getattr(ours.truth, metric)
            lines.append(
                f"| {ours.profile} | {metric} | {_fmt(truth)} | {_fmt(ours.figures.get(metric))} | "
                f"{_fmt(our_err[metric])} | {_fmt(getattr(theirs.truth, metric))} | "
                f"{_fmt(theirs.figures.get(metric))} | {_fmt(their_err[metric])} | {_fmt(tolerance(metric, truth))} |")
    lines += ["", "Relay scheduling error (actual send − scheduled send), µs:", "",
              "| run | n | mean | p50 | p99 | max |", "|---|---:|---:|---:|---:|---:|"]
    for run in (r for pair in pairs for r in pair):
        s = run.scheduling_error_us
        lines.append(f"| {run.tool} {run.profile} | {s['n']} | {s['mean']:.0f} | {s['p50']:.0f} | "
                     f"{s['p99']:.0f} | {s['max']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--duration", type=float, default=DURATION_S, help="seconds per probe run")
    parser.add_argument("--profile", action="append", choices=sorted(PROFILES),
                        help="profile to run (repeatable); default: all")
    args = parser.parse_args(argv)
    names = args.profile or list(PROFILES)
    pairs = []
    with tempfile.TemporaryDirectory() as tmp, NetcheckServer() as netcheck, IrttServer() as irtt:
        for name in names:
            ours = measure_netcheck(PROFILES[name], args.seed, netcheck.udp, Path(tmp), args.duration)
            theirs = measure_irtt(PROFILES[name], args.seed, irtt.address, Path(tmp), args.duration)
            pairs.append((ours, theirs))
    print(f"Seed {args.seed}, {args.duration:g} s at 20 ms, 160-byte packets; errors are |reported − truth|.\n")
    print(table(pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
