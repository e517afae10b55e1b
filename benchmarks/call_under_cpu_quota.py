"""What a real call says when the client's computer is short of CPU (issue 25, Must show 2; not yet met).

The call pair of tests/test_call_e2e.py (two headless Chromiums, netcheck's call module in each, the
client's browser in a network namespace with a clean path) with every process of the client's Chromium
in a cgroup CPU quota (tests/harness/cgroups.py). Every 5 s it prints the client's video sending as its
own browser reports it (`qualityLimitationReason`, height, frames per second), the quota's throttled
time, and the warnings on the therapist's panel with their advice. Needs root (cgroups, namespaces).

    python benchmarks/call_under_cpu_quota.py --cores 0.12 --seconds 60
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness.call_pair import CallPair  # noqa: E402
from tests.harness.cgroups import CpuQuota  # noqa: E402

WARNINGS = """(els) => els.map((e) => [e.dataset.warningCue, e.dataset.leg, e.dataset.source, e.dataset.level,
  e.querySelector('.warning-message')?.innerText, e.querySelector('.warning-advice')?.innerText])"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=float, default=0.12, help="the client browser's CPU quota, in cores")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, CpuQuota(cores=args.cores) as quota, \
            CallPair(Path(folder), "cpu-quota-1", client_cgroup=quota.path / "cgroup.procs") as pair:
        started = time.monotonic()
        while time.monotonic() - started < args.seconds:
            pair.wait_connected_for(5.0)
            sending = next((s for s in pair.stats("client") if s["type"] == "outbound-rtp" and s.get("kind") == "video"),
                           {})
            print(f"{time.monotonic() - started:5.0f} s  client sends {sending.get('frameHeight')} px at "
                  f"{sending.get('framesPerSecond')} fps, limited by {sending.get('qualityLimitationReason')!r}; "
                  f"throttled {quota.throttled_s():.1f} s", flush=True)
            for cue, leg, source, level, message, advice in pair.panel.eval_on_selector_all("[data-warning-cue]",
                                                                                           WARNINGS):
                print(f"        {leg}/{cue} ({source}, {level}): {message} — {advice}", flush=True)


if __name__ == "__main__":
    main()
