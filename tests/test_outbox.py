"""The outbox in the local store: order, acknowledgement, limits, the delivery lease, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from netcheck.store.points import Point
from netcheck.store.local import LocalStore

NOW_MS = int(time.time() * 1000)


def points(count: int, start: int = 0) -> list[Point]:
    return [Point("netcheck_udp", {"agent": "a"}, {"rtt_p95_ms": float(i), "seq": i}, NOW_MS + i)
            for i in range(start, start + count)]


def test_points_wait_in_order_until_acknowledged(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "s.sqlite3") as store:
        store.add_points(points(10))
        first = store.pending_points(4)
        assert [row.point.fields["seq"] for row in first] == [0, 1, 2, 3]
        store.mark_delivered([row.id for row in first])
        store.mark_delivered([row.id for row in first])  # a replayed acknowledgement counts once
        assert [row.point.fields["seq"] for row in store.pending_points(100)] == list(range(4, 10))
        stats = store.outbox_stats()
        assert (stats.points_total, stats.outbox_pending, stats.delivered, stats.dropped) == (10, 6, 4, 0)


def test_a_full_store_drops_delivered_history_first_then_the_oldest_pending(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "s.sqlite3", max_points=1000) as store:
        store.add_points(points(600))
        store.mark_delivered([row.id for row in store.pending_points(300)])
        assert store.add_points(points(500, start=600)) == 0  # 1100 rows: 100 delivered ones go
        assert store.outbox_stats().points_total == 1000
        dropped = store.add_points(points(300, start=1100))  # 200 delivered left, then 100 pending
        assert dropped == 100
        stats = store.outbox_stats()
        assert (stats.points_total, stats.outbox_pending, stats.dropped) == (1000, 1000, 100)
        assert store.pending_points(1)[0].point.fields["seq"] == 400  # the oldest pending went


def test_delivered_points_leave_after_the_retention_period(tmp_path: Path) -> None:
    old = [Point("m", {}, {"x": 1.0}, NOW_MS - 40 * 86_400_000)]
    with LocalStore(tmp_path / "s.sqlite3", retention_days=30) as store:
        store.add_points(old)
        store.add_points(points(1))
        assert store.outbox_stats().points_total == 2  # undelivered: kept whatever its age
        store.mark_delivered([row.id for row in store.pending_points(10)])
        store.add_points(points(1, start=1))
        assert store.outbox_stats().points_total == 2  # the old delivered one is gone


def test_the_delivery_lease_keeps_a_second_live_process_out(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from netcheck.store.local import LocalStore
        store = LocalStore(Path({str(path)!r}))
        print(store.take_delivery_lease(ttl_s=60), flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        with LocalStore(path) as store:
            assert store.take_delivery_lease() is False
            holder.send_signal(signal.SIGKILL)  # the holder dies without releasing
            holder.wait()
            assert store.take_delivery_lease() is True
            assert store.take_delivery_lease() is True  # renewing our own lease
    finally:
        if holder.poll() is None:
            holder.kill()


def test_kill_9_while_writing_loses_no_committed_point(tmp_path: Path) -> None:
    """A writer killed mid-transaction leaves the store readable with whole batches only."""
    path = tmp_path / "s.sqlite3"
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from netcheck.store.points import Point
        from netcheck.store.local import LocalStore
        store = LocalStore(Path({str(path)!r}))
        batch = 0
        while True:
            store.add_points([Point("m", {{}}, {{"batch": batch, "i": i}}, {NOW_MS} + batch * 100 + i) for i in range(100)])
            print(batch, flush=True)
            batch += 1
    """)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    for _ in range(20):
        committed = int(writer.stdout.readline())
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    with LocalStore(path) as store:
        stored = store.pending_points(1_000_000)
        batches = {row.point.fields["batch"] for row in stored}
        assert len(stored) == 100 * len(batches)  # no half batch
        assert set(range(committed + 1)) <= batches
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
