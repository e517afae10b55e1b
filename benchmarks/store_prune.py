"""What keeping the store bounded costs a write (issue 23): the time of one `save_check` on a store at
its bound, and of the longest pruning step one write can take (a batch of old checks, of old points).

A store is filled with N checks shaped like a browser check's (the report of a real `POST /v1/checks`
≈ 5.6 kB, three measurement rows), stored over the last N seconds. Then, on a real SQLite file with
`synchronous=FULL`: (1) `save_check` at the count bound (it adds one check and deletes the oldest, one
commit, fsynced) and (2) `retention.prune` when every row is past its retention, which deletes
PRUNE_BATCH_ROWS checks and their measurements in one step; (3) `add_points` of one point on a store of
200,000 delivered points past their retention (it deletes PRUNE_BATCH_POINTS of them). Each timed step
commits (fsynced), as a real write does. Medians (min–max) of the repeats.

    python benchmarks/store_prune.py [--checks 50000] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from netcheck.config import StoreLimits  # noqa: E402
from netcheck.store import outbox, retention  # noqa: E402
from netcheck.store.local import LocalStore  # noqa: E402
from netcheck.store.points import Point  # noqa: E402

PROBES = ("av", "udp", "throughput")


def browser_check(check_id: str) -> dict:
    """A stored browser check's shape and size (≈ 5.6 kB of report, three measurement rows)."""
    fields = {"status": "ok", **{f"figure_{n}_ms": 12.5 + n for n in range(20)}}
    return {"check_id": check_id, "started_at": "2026-12-01T10:00:00.000+00:00", "duration_s": 28.4,
            "server": "http://127.0.0.1:8470", "recommendation": "video", "level": "good", "client": "browser",
            "summary": "x" * 2500, "advice": ["y" * 200] * 5, "measurements": {probe: fields for probe in PROBES},
            "probe_runs": {probe: {"started_at": "2026-12-01T10:00:00.000+00:00", "duration_s": 4.0}
                           for probe in PROBES}}


def fill(store: LocalStore, count: int, now_ms: int) -> None:
    db = store._db  # the benchmark writes many rows in one transaction; the product writes one check at a time
    with db:
        for number in range(count):
            report = browser_check(uuid.uuid4().hex)
            db.execute("INSERT INTO checks (check_id, started_at, duration_s, server, recommendation, level, "
                       "report_json, stored_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (report["check_id"], report["started_at"], report["duration_s"], report["server"],
                        report["recommendation"], report["level"], json.dumps(report), now_ms - (count - number) * 1000))
            for probe, fields in report["measurements"].items():
                db.execute("INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?)",
                           (report["check_id"], probe, report["started_at"], 4.0, "ok", json.dumps(fields)))


def old_delivered_points(store: LocalStore, count: int, now_ms: int) -> None:
    """`count` agent-shaped points, delivered, 31 days old (past the default 30 days of retention)."""
    tags = {"agent": "bench0000001", "kind": "session", "role": "client", "site": "north", "status": "ok"}
    fields = {f"figure_{n}_ms": 21.5 + n for n in range(14)}
    old_ms = now_ms - 31 * retention.DAY_MS
    db = store._db
    with db:
        outbox.insert_points(db, [Point("netcheck_udp", tags, fields, old_ms + i) for i in range(count)])
        db.execute("UPDATE points SET state = ?, delivered_at_ms = ?", (outbox.DELIVERED, old_ms))


def timed_ms(action) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with TemporaryDirectory() as folder:
        now_ms = int(time.time() * 1000)
        store = LocalStore(Path(folder) / "netcheck.sqlite3", limits=StoreLimits(max_checks=args.checks))
        fill(store, args.checks, now_ms)
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size_mb = (Path(folder) / "netcheck.sqlite3").stat().st_size / 1e6
        at_bound = [timed_ms(lambda: store.save_check(browser_check(uuid.uuid4().hex)))
                    for _ in range(args.repeats)]
        bound = retention.TableBound(args.checks, 90)
        ninety_days_on_ms = now_ms + 91 * retention.DAY_MS  # every row past its retention

        def batch() -> None:
            with store._db:
                retention.prune(store._db, "checks", bound, ninety_days_on_ms, 1)

        batches = [timed_ms(batch) for _ in range(args.repeats)]
        store.close()
        points_store = LocalStore(Path(folder) / "points.sqlite3")
        old_delivered_points(points_store, 200_000, now_ms)
        point = Point("netcheck_udp", {"agent": "bench0000001"}, {"rtt_p95_ms": 21.5}, now_ms)
        point_steps = [timed_ms(lambda: points_store.add_points([point])) for _ in range(args.repeats)]
        points_store.close()
    print(f"{args.checks} checks, {size_mb:.0f} MB, {size_mb * 1000 / args.checks:.1f} kB a check")
    print(f"save_check at the bound (one in, one out, one fsynced commit): {spread(at_bound)} ms")
    print(f"one pruning step of {retention.PRUNE_BATCH_ROWS} old checks and their measurements: {spread(batches)} ms")
    print(f"add_points of one point, deleting {outbox.PRUNE_BATCH_POINTS} old delivered ones: {spread(point_steps)} ms")


if __name__ == "__main__":
    main()
