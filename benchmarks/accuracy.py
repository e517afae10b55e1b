"""netcheck vs irtt accuracy against the impairment relay: a markdown table on stdout.

    python benchmarks/accuracy.py --runs 5 [--seed 4] [--duration 5] [--profile 60ms-3pct ...] [--no-irtt]
        [--save runs.json]
    python benchmarks/accuracy.py --load a.json --load b.json ...   # the tables of runs saved before

Runs the same profiles as tests/test_accuracy.py (one `netcheck serve`, one `irtt server`, a fresh
relay per run). Run k uses seed + k, so the runs differ in the path's random draws as well as in
timing. Per profile and metric: the relay's truth (median over the runs), each tool's absolute
error |reported − truth| as median (min–max) over the runs, and the bound the test asserts.
Needs irtt on PATH unless --no-irtt. `--save` keeps every run (figures, truth, the relay's timing)
as JSON, so that a long matrix can be measured in short pieces on a shared machine and printed as
one table with `--load`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # so `tests.*` imports from a checkout

from tests.harness.impairment import PROFILES, Truth  # noqa: E402
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


def goal(runs: dict[str, list[tuple[Run, Run | None]]]) -> str:
    """Issue 23's goal per profile, on the medians over the runs, in µs (the errors are a few µs):
    netcheck's RTT error ≤ 1.5× irtt's, each of its jitter errors ≤ irtt's."""
    out = ["| profile | RTT error µs, netcheck / irtt (ratio) | jitter error µs, netcheck / irtt: round trip; up; down "
           "| goal met |", "|---|---:|---:|---|"]
    pooled = [pair for pairs in runs.values() for pair in pairs]
    for profile, pairs in [*runs.items(), *([("all profiles, pooled", pooled)] if len(runs) > 1 else [])]:
        if any(theirs is None for _, theirs in pairs):
            continue
        medians = {metric: [1000 * statistics.median(errors(pair[index].figures, pair[index].truth)[metric]
                                                     for pair in pairs) for index in (0, 1)] for metric in METRICS[:4]}
        ours_rtt, theirs_rtt = medians["rtt_mean_ms"]
        jitters = [medians[metric] for metric in ("jitter_ms", "jitter_up_ms", "jitter_down_ms")]
        missed = [name for name, (ours, theirs) in zip(("round trip", "up", "down"), jitters) if ours > theirs]
        missed += ["RTT"] if ours_rtt > 1.5 * theirs_rtt else []
        ratio = f"{ours_rtt / theirs_rtt:.2f}" if theirs_rtt else "—"
        out.append(f"| {profile} | {ours_rtt:.0f} / {theirs_rtt:.0f} ({ratio}×) | "
                   f"{'; '.join(f'{o:.1f} / {t:.1f}' for o, t in jitters)} | "
                   f"{'yes' if not missed else 'no: ' + ', '.join(missed)} |")
    return "\n".join(out)


def save(runs: dict[str, list[tuple[Run, Run | None]]], path: Path) -> None:
    path.write_text(json.dumps({name: [[dataclasses.asdict(run) if run else None for run in pair] for pair in pairs]
                                for name, pairs in runs.items()}))


def load(paths: list[Path]) -> dict[str, list[tuple[Run, Run | None]]]:
    """Runs saved by `--save`, merged per profile in the order given."""
    def run(doc: dict | None) -> Run | None:
        return None if doc is None else Run(**{**doc, "truth": Truth(**doc["truth"])})
    runs: dict[str, list[tuple[Run, Run | None]]] = {}
    for path in paths:
        for name, pairs in json.loads(path.read_text()).items():
            runs.setdefault(name, []).extend((run(ours), run(theirs)) for ours, theirs in pairs)
    return runs


def measure(names: list[str], count: int, first_seed: int, duration_s: float,
            with_irtt: bool) -> dict[str, list[tuple[Run, Run | None]]]:
    runs: dict[str, list[tuple[Run, Run | None]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        netcheck = stack.enter_context(NetcheckServer())
        irtt = stack.enter_context(IrttServer()) if with_irtt else None
        for k in range(count):
            for name in names:
                seed = first_seed + k
                ours = measure_netcheck(PROFILES[name], seed, netcheck.udp, Path(tmp), duration_s,
                                        netcheck.http_url)
                theirs = None if irtt is None else measure_irtt(PROFILES[name], seed, irtt.address, Path(tmp),
                                                                duration_s)
                runs[name].append((ours, theirs))
                print(f"run {k + 1}/{count} {name} done", file=sys.stderr, flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per profile and tool (seeds seed … seed+runs−1)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--duration", type=float, default=DURATION_S, help="seconds per probe run")
    parser.add_argument("--profile", action="append", choices=sorted(PROFILES),
                        help="profile to run (repeatable); default: all")
    parser.add_argument("--no-irtt", action="store_true", help="netcheck only")
    parser.add_argument("--save", type=Path, help="also write every run to this JSON file")
    parser.add_argument("--load", type=Path, action="append", help="print the tables of saved runs (repeatable)")
    args = parser.parse_args(argv)
    if args.load:
        runs = load(args.load)
        count = max(len(pairs) for pairs in runs.values())
        print(f"{count} runs per profile, errors are |reported − truth| of each run.\n")
    else:
        runs = measure(args.profile or list(PROFILES), args.runs, args.seed, args.duration, not args.no_irtt)
        if args.save:
            save(runs, args.save)
        print(f"{args.runs} runs per profile (seeds {args.seed}…{args.seed + args.runs - 1}), {args.duration:g} s at "
              f"20 ms, 160-byte packets; errors are |reported − truth| of each run.\n")
    print(table(runs))
    print("\nIssue 23's goal (medians over the runs):\n")
    print(goal(runs))
    print("\nRelay scheduling error (actual send − scheduled send), pooled over runs:\n")
    print(scheduling(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
