"""Time to verdict of a full `netcheck check` from a namespace, with and without an abusive client on
another address (tests/harness/abuser.py: 40 throughput streams held, A/V sessions asked for twice a
second). Issue 15's must-show 1, as figures.

    python benchmarks/fairness.py [--runs 5]

Prints a markdown table: median (min–max) seconds, the verdicts, and what the abuser was answered.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # so `tests.*` imports from a checkout

from tests.harness.netns import ClientNamespace  # noqa: E402
from tests.harness.throughput_runs import server_on_root_side  # noqa: E402
from tests.test_fairness import ABUSE_S, check_in, start_abuser  # noqa: E402


def one_run(abused: bool, workdir: Path) -> tuple[float, str, Counter]:
    with ClientNamespace() as namespace, server_on_root_side(namespace, workdir / "server") as url:
        abuser = start_abuser(url, ABUSE_S) if abused else None
        if abuser is not None:
            time.sleep(3.0)
        started_s = time.monotonic()
        _, report, _ = check_in(namespace, workdir / "client", url)
        took_s = time.monotonic() - started_s
        statuses: Counter = Counter()
        if abuser is not None:
            statuses.update(json.loads(abuser.communicate(timeout=ABUSE_S + 30)[0] or "{}"))
    return took_s, report.get("recommendation", "none"), statuses


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    results: dict[bool, list[tuple[float, str, Counter]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as directory:
        for index in range(runs):
            for abused in (False, True):
                results[abused].append(one_run(abused, Path(directory) / f"{index}-{abused}"))
    print(f"| client | time to verdict, s (median, min–max of {runs}) | verdicts | abuser answered |")
    print("|---|---:|---|---|")
    for abused, label in ((False, "alone"), (True, "beside the abuser")):
        times = [took for took, _, _ in results[abused]]
        verdicts = Counter(verdict for _, verdict, _ in results[abused])
        answered = sum((statuses for _, _, statuses in results[abused]), Counter())
        print(f"| {label} | {summary(times)} | {dict(verdicts)} | {dict(answered) if abused else '—'} |")


if __name__ == "__main__":
    main()
