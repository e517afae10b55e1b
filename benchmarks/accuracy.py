"""netcheck vs irtt accuracy against the impairment relay: a markdown table on stdout.

    python benchmarks/accuracy.py --runs 5 [--seed 4] [--duration 5] [--profile 60ms-3pct ...] [--no-irtt]

Runs the same profiles as tests/test_accuracy.py (one `netcheck serve`, one `irtt server`, a fresh
relay per run). Run k uses seed + k, so the runs differ in the path's random draws as well as in
timing. Per profile and metric: the relay's truth (median over the runs), each tool's absolute
error |reported − truth| as median (min–max) over the runs, and the bound the test asserts.
Needs irtt on PATH unless --no-irtt.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # so `tests.*` imports from a checkout

from tests.harness.impairment import PROFILES  # noqa: E402
from tests.harness.irtt_runner import IrttServer  # noqa: E402
from tests.harness.udp_accuracy import (  # noqa: E402
    DURATION_S, METRICS, SEED, NetcheckServer, Run, errors, measure_irtt, measure_netcheck, tolerance,
)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _spread(values: list[float]) -> str:
    """`median (min–max)`, or a dash when a tool reported nothing."""
    finite = [v for v in values if v != float("inf")]
    if not finite:
        return "—"
    text = f"{statistics.median(finite):.2f} ({min(finite):.2f}–{max(finite):.2f})"
    return text if len(finite) == len(values) else f"{text}; {len(values) - len(finite)} run(s) without a figure"


def table(runs: dict[str, list[tuple[Run, Run | None]]]) -> str:
    lines = [
        "| profile | metric | truth (median) | netcheck error, median (min–max) | irtt error, median (min–max) "
        "| test bound |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for profile, pairs in runs.items():
        for metric in METRICS:
            truths = [getattr(ours.truth, metric) for ours, _ in pairs]
            truth = statistics.median(t for t in truths if t is not None) if any(t is not None for t in truths) else None
            our_errors = [errors(ours.figures, ours.truth)[metric] for ours, _ in pairs]
            their_errors = [errors(theirs.figures, theirs.truth)[metric] for _, theirs in pairs if theirs is not None]
            lines.append(f"| {profile} | {metric} | {_fmt(truth)} | {_spread(our_errors)} | "
                         f"{_spread(their_errors) if their_errors else '—'} | "
                         f"{_fmt(tolerance(metric, truth) if truth is not None else None)} |")
    return "\n".join(lines)


def scheduling(runs: dict[str, list[tuple[Run, Run | None]]]) -> str:
    """The relay's own timing error (actual − scheduled send), pooled per tool: the truth's noise."""
    out = ["| relay runs for | runs | median of per-run p50 µs | median of per-run p99 µs | worst max µs |",
           "|---|---:|---:|---:|---:|"]
    for tool, index in (("netcheck", 0), ("irtt", 1)):
        stats = [pair[index].scheduling_error_us for pairs in runs.values() for pair in pairs
                 if pair[index] is not None and pair[index].scheduling_error_us.get("n")]
        if stats:
            out.append(f"| {tool} | {len(stats)} | {statistics.median(s['p50'] for s in stats):.0f} | "
                       f"{statistics.median(s['p99'] for s in stats):.0f} | {max(s['max'] for s in stats):.0f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per profile and tool (seeds seed … seed+runs−1)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--duration", type=float, default=DURATION_S, help="seconds per probe run")
    parser.add_argument("--profile", action="append", choices=sorted(PROFILES),
                        help="profile to run (repeatable); default: all")
    parser.add_argument("--no-irtt", action="store_true", help="netcheck only")
    args = parser.parse_args(argv)
    names = args.profile or list(PROFILES)
    runs: dict[str, list[tuple[Run, Run | None]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        netcheck = stack.enter_context(NetcheckServer())
        irtt = None if args.no_irtt else stack.enter_context(IrttServer())
        for k in range(args.runs):
            for name in names:
                seed = args.seed + k
                ours = measure_netcheck(PROFILES[name], seed, netcheck.udp, Path(tmp), args.duration,
                                        netcheck.http_url)
                theirs = None if irtt is None else measure_irtt(PROFILES[name], seed, irtt.address, Path(tmp),
                                                                args.duration)
                runs[name].append((ours, theirs))
                print(f"run {k + 1}/{args.runs} {name} done", file=sys.stderr, flush=True)
    print(f"{args.runs} runs per profile (seeds {args.seed}…{args.seed + args.runs - 1}), {args.duration:g} s at "
          f"20 ms, 160-byte packets; errors are |reported − truth| of each run.\n")
    print(table(runs))
    print("\nRelay scheduling error (actual send − scheduled send), pooled over runs:\n")
    print(scheduling(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
