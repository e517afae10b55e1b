"""The call itself (issue 25, Must show 1), run N times: raise and clear times, loss error.

    flock /tmp/netcheck-heavy.lock python benchmarks/call_warning.py --runs 5 [--phase 2.5] [--door rtcstats] [--save runs.json]
    python benchmarks/call_warning.py --load a.json --load b.json   # the table of runs saved before

Each run is tests/test_call_e2e.py's scenario (two headless Chromiums in a real WebRTC call, the
client's in a network namespace, netcheck's module in the clinic's page (`--door rtcstats`: Jitsi's npm
rtcstats client, through the node's rtcstats door, tests/harness/call_pair.py), 8 % random loss on the
client's UDP for 32 s, beginning `--phase` s after one of the client's call windows arrived): how long after the loss began the therapist's panel showed the client's
call-measured vocal-tone warning, how long after it ended the warning went, and |the loss the call
reported − what nftables dropped of the same Opus packets|, as median (min–max). Needs root
(network namespaces) and Debian's chromium.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # so `tests.*` imports from a checkout

from tests.harness.browser import one_chromium_per_module  # noqa: E402
from tests.test_call_e2e import (  # noqa: E402
    CLEAR_BUDGET_S, LOSS_TOLERANCE_PP, PHASE_S, RAISE_BUDGET_S, Outcome, run_scenario,
)


def spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def table(outcomes: list[Outcome]) -> str:
    errors = [abs(o.reported_pct - o.truth_pct) for o in outcomes]
    return "\n".join([
        f"| figure ({len(outcomes)} runs) | median (min–max) | the test's bound |",
        "|---|---:|---:|",
        f"| warning raised after the loss began, s | {spread([o.raise_s for o in outcomes])} | {RAISE_BUDGET_S:g} |",
        f"| warning cleared after the loss ended, s | {spread([o.clear_s for o in outcomes])} | {CLEAR_BUDGET_S:g} |",
        f"| loss the call reported (therapist's inbound audio), % | {spread([o.reported_pct for o in outcomes], 2)} | |",
        f"| loss nftables dropped of the same Opus packets, % | {spread([o.truth_pct for o in outcomes], 2)} | |",
        f"| error, percentage points | {spread(errors, 2)} | {LOSS_TOLERANCE_PP:g} |",
        f"| windows compared per run | {spread([float(o.windows) for o in outcomes], 0)} | ≥ 4 |",
        f"| client leg's RTCP figure (remote-inbound fractionLost), % | "
        f"{spread([o.client_reported_pct for o in outcomes if o.client_reported_pct is not None], 2)} | |",
        f"| all the client's UDP dropped, % | {spread([o.all_udp_pct for o in outcomes], 2)} | |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--phase", type=float, default=PHASE_S,
                        help="the loss begins this long after a client window arrived (0: just after, the worst)")
    parser.add_argument("--door", choices=("module", "rtcstats"), default="module")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--load", type=Path, action="append", default=[])
    args = parser.parse_args()
    outcomes = [Outcome(**run) for path in args.load for run in json.loads(path.read_text())]
    with one_chromium_per_module():
        for index in range(0 if args.load else args.runs):
            with tempfile.TemporaryDirectory() as folder:
                outcome = run_scenario(Path(folder), phase_s=args.phase, door=args.door)
            print(f"run {index + 1}: {outcome}", file=sys.stderr, flush=True)
            outcomes.append(outcome)
    if args.save:
        args.save.write_text(json.dumps([dataclasses.asdict(o) for o in outcomes], indent=1))
    print(table(outcomes))


if __name__ == "__main__":
    main()
