"""The outbox: every point, kept in SQLite until InfluxDB acknowledged it, then kept as history.

A point's row is written in the same transaction as the check or window it belongs to, so a
crash loses neither. `state` is pending until the server acknowledged the batch holding the
row; a crash between the acknowledgement and the commit re-sends that batch, which is harmless
because a point keeps its timestamp and InfluxDB overwrites the same series and time.

These functions run inside the caller's transaction (store/local.py owns transactions).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from netcheck.store.points import Point

PENDING, DELIVERED, REJECTED = 0, 1, 2
LEASE_KEY = "delivery_lease"

SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    measurement TEXT NOT NULL,
    tags_json TEXT NOT NULL,
    fields_json TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    delivered_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS points_pending ON points(id) WHERE state = 0;
CREATE INDEX IF NOT EXISTS points_time ON points(time_ms);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class OutboxStats:
    """`netcheck store stats`: totals since the store was created."""

    points_total: int
    """Points in the local store now (pending, delivered and rejected)."""
    outbox_pending: int
    delivered: int
    dropped: int
    """Undelivered points deleted because the store was full."""
    rejected: int
    """Points the server refused as malformed (HTTP 400), set aside so the rest can flow."""


@dataclass(frozen=True)
class StoredPoint:
    id: int
    point: Point
    state: int


def insert_points(db: sqlite3.Connection, points: Sequence[Point]) -> None:
    db.executemany(
        "INSERT INTO points (time_ms, measurement, tags_json, fields_json) VALUES (?, ?, ?, ?)",
        [(p.time_ms, p.measurement, json.dumps(dict(p.tags), sort_keys=True), json.dumps(dict(p.fields), sort_keys=True))
         for p in points],
    )


PRUNE_BATCH_POINTS = 500
"""Points that one write deletes at most by age, and by count beyond what it added itself: a node
off for a month, or a lowered `max_points`, would otherwise delete a month of history in one stop;
the rest go with the next writes. 500 take ≈ 2 ms (BENCHMARKS.md, "Keeping the store bounded")."""


def enforce_limits(db: sqlite3.Connection, max_points: int, delivered_before_ms: int, added: int = 0) -> int:
    """Delete delivered history past retention, then keep at most `max_points` rows.

    Delivered and rejected rows go first, oldest first; only then the oldest pending rows,
    which are counted as dropped. Returns how many pending points were dropped. Every deletion
    is also counted by reason (`points_dropped_by_age`, `points_dropped_by_count`). `added`: the
    points this write inserted; at least that many may go, so a write never leaves the table further
    over its bound than it found it.
    """
    aged = db.execute("DELETE FROM points WHERE id IN (SELECT id FROM points WHERE state != 0 AND time_ms < ? "
                      "ORDER BY time_ms LIMIT ?)", (delivered_before_ms, PRUNE_BATCH_POINTS)).rowcount
    add_to_counter(db, "points_dropped_by_age", aged)
    excess = _count(db, "SELECT COUNT(*) FROM points") - max_points
    if excess <= 0:
        return 0
    excess = min(excess, max(PRUNE_BATCH_POINTS, added))
    history = db.execute("DELETE FROM points WHERE id IN (SELECT id FROM points WHERE state != 0 ORDER BY id LIMIT ?)",
                         (excess,)).rowcount
    add_to_counter(db, "points_dropped_by_count", history)
    excess -= history
    if excess <= 0:
        return 0
    db.execute("DELETE FROM points WHERE id IN (SELECT id FROM points WHERE state = 0 ORDER BY id LIMIT ?)",
               (excess,))
    add_to_counter(db, "dropped", excess)
    add_to_counter(db, "points_dropped_by_count", excess)
    return excess


def pending(db: sqlite3.Connection, limit: int) -> list[StoredPoint]:
    """The oldest undelivered points, in the order they were stored."""
    rows = db.execute(
        "SELECT id, time_ms, measurement, tags_json, fields_json, state FROM points WHERE state = 0 ORDER BY id LIMIT ?",
        (limit,),
    ).fetchall()
    return [_stored(row) for row in rows]


def mark(db: sqlite3.Connection, ids: Sequence[int], state: int, now_ms: int) -> None:
    """Mark pending rows delivered (or rejected) and count them once, even if marked twice."""
    changed = 0
    for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
        chunk = list(ids[start:start + 500])
        marks = ",".join("?" * len(chunk))
        cursor = db.execute(f"UPDATE points SET state = ?, delivered_at_ms = ? WHERE state = 0 AND id IN ({marks})",
                            (state, now_ms, *chunk))
        changed += cursor.rowcount
    add_to_counter(db, "delivered" if state == DELIVERED else "rejected", changed)


def stats(db: sqlite3.Connection) -> OutboxStats:
    counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
    return OutboxStats(
        points_total=_count(db, "SELECT COUNT(*) FROM points"),
        outbox_pending=_count(db, "SELECT COUNT(*) FROM points WHERE state = 0"),
        delivered=counters.get("delivered", 0),
        dropped=counters.get("dropped", 0),
        rejected=counters.get("rejected", 0),
    )


def points_since(db: sqlite3.Connection, since_ms: int) -> Iterator[StoredPoint]:
    """Every stored point from `since_ms` on, oldest first, streamed (an export can be large)."""
    cursor = db.execute(
        "SELECT id, time_ms, measurement, tags_json, fields_json, state FROM points WHERE time_ms >= ? ORDER BY time_ms, id",
        (since_ms,),
    )
    for row in cursor:
        yield _stored(row)


def add_to_counter(db: sqlite3.Connection, name: str, amount: int) -> None:
    if amount:
        db.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                   (name, amount))


def take_lease(db: sqlite3.Connection, now_ms: int, ttl_ms: int, pid: int | None = None) -> bool:
    """One deliverer at a time (an agent and a `check` may share a store): sending the same rows
    from two processes would only waste traffic, or duplicate them on a server without overwrite.

    The lease is ours if it is free, expired, ours already, or held by a process that is gone.
    """
    pid = os.getpid() if pid is None else pid
    row = db.execute("SELECT value FROM meta WHERE key = ?", (LEASE_KEY,)).fetchone()
    if row is not None:
        holder, expires_ms = (int(part) for part in row[0].split())
        if holder != pid and expires_ms > now_ms and _process_alive(holder):
            return False
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (LEASE_KEY, f"{pid} {now_ms + ttl_ms}"))
    return True


def release_lease(db: sqlite3.Connection, pid: int | None = None) -> None:
    pid = os.getpid() if pid is None else pid
    db.execute("DELETE FROM meta WHERE key = ? AND value LIKE ?", (LEASE_KEY, f"{pid} %"))


def _process_alive(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid)


def _count(db: sqlite3.Connection, query: str) -> int:
    return int(db.execute(query).fetchone()[0])


def _stored(row: tuple) -> StoredPoint:
    point_id, time_ms, measurement, tags_json, fields_json, state = row
    return StoredPoint(point_id, Point(measurement, json.loads(tags_json), json.loads(fields_json), time_ms), state)
