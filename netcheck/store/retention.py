"""Keeping the local store bounded: checks, windows and session events by age and by count.

Runs inside the caller's write transaction (store/local.py), so pruning happens wherever writes
happen (in the agent's loop, in the server's writer) and costs one short step per write: at most
`PRUNE_BATCH_ROWS` rows per table and reason, found through an index. A store far over its bounds
(the bounds were lowered, the node was off for months) comes back within them over the next writes,
never in one long stop. What goes is counted in `counters` (`<table>_dropped_by_age`,
`<table>_dropped_by_count`) for `netcheck store stats`.

Age is the time the row was stored (`stored_ms`, the store's own clock), not a time a peer wrote
into it; the count keeps the newest rows by insertion order (rowid) for the same reason.
A check's measurement rows go with their check: a check without its measurements, or measurements
of no check, would be neither.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from netcheck.store.outbox import add_to_counter

DAY_MS = 86_400_000
PRUNE_BATCH_ROWS = 50
"""Rows per table and reason that one write deletes at most (or as many as it added, if more): 50 checks
with their measurements from a store of 50,000 take ≈ 2.7 ms here, one commit included (200 took
≈ 19 ms; BENCHMARKS.md, "Keeping the store bounded"); an ordinary write at the bound deletes one."""
PRUNED_TABLES = ("checks", "windows", "session_events")
STORED_INDEXES = """
CREATE INDEX IF NOT EXISTS checks_stored ON checks(stored_ms);
CREATE INDEX IF NOT EXISTS windows_stored ON windows(stored_ms);
CREATE INDEX IF NOT EXISTS session_events_stored ON session_events(stored_ms);
"""
OWN_TIME = {"checks": "started_at", "windows": "started_at", "session_events": "at"}
"""Before schema 3 rows had no `stored_ms`; on upgrade it is taken from the row's own time."""


@dataclass(frozen=True)
class TableBound:
    max_rows: int
    retention_days: float


def prune(db: sqlite3.Connection, table: str, bound: TableBound, now_ms: int, added_rows: int) -> None:
    """Delete `table`'s rows stored before its retention, then its oldest rows beyond `max_rows`.

    `added_rows`: what this write inserted; at least that many may go by count, so that a write never
    leaves the table further over its bound than it found it, whatever the batch.
    """
    cutoff_ms = now_ms - int(bound.retention_days * DAY_MS)
    old = f"SELECT rowid FROM {table} WHERE stored_ms < ? ORDER BY stored_ms, rowid LIMIT ?"
    _delete(db, table, old, (cutoff_ms, PRUNE_BATCH_ROWS), "by_age")
    excess = int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]) - bound.max_rows
    if excess > 0:
        oldest = f"SELECT rowid FROM {table} ORDER BY rowid LIMIT ?"
        _delete(db, table, oldest, (min(excess, max(PRUNE_BATCH_ROWS, added_rows)),), "by_count")


def _delete(db: sqlite3.Connection, table: str, rowids_query: str, parameters: tuple[int, ...], reason: str) -> None:
    if table == "checks":  # their measurements first, chosen by the same query
        measurements = db.execute(
            f"DELETE FROM measurements WHERE check_id IN (SELECT check_id FROM checks WHERE rowid IN ({rowids_query}))",
            parameters).rowcount
        add_to_counter(db, f"measurements_dropped_{reason}", measurements)
    deleted = db.execute(f"DELETE FROM {table} WHERE rowid IN ({rowids_query})", parameters).rowcount
    add_to_counter(db, f"{table}_dropped_{reason}", deleted)


def upgrade(db: sqlite3.Connection, now_ms: int) -> None:
    """Give a store from before schema 3 its `stored_ms` columns (from each row's own time, never later
    than now; a time SQLite cannot read counts as now) and their indexes. Inside a write transaction."""
    for table in PRUNED_TABLES:
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if "stored_ms" in columns:
            continue
        db.execute(f"ALTER TABLE {table} ADD COLUMN stored_ms INTEGER")
        own = OWN_TIME[table]
        db.execute(f"UPDATE {table} SET stored_ms = MIN(COALESCE("
                   f"CAST((julianday({own}) - 2440587.5) * {DAY_MS} AS INTEGER), :now), :now)", {"now": now_ms})
    for statement in STORED_INDEXES.strip().splitlines():
        db.execute(statement)
