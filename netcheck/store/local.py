"""The local store: SQLite in WAL mode, every check, window and point, always written first.

It is also the outbox (store/outbox.py): points leave for InfluxDB from here. Commits are
fsynced (`synchronous=FULL`), so a power cut loses nothing that was reported as stored; a server
makes them in a thread of their own (store/writer.py), never on its event loop. Every write also
prunes what it wrote to, within `StoreLimits` (store/retention.py).

Fault hook: `NETCHECK_FAULT_STORE_WRITE_MS` (0–10,000) makes every write sleep that long inside its
transaction, in the thread that writes, as a slow disk would (tests, docs/deploy.md).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from netcheck.config import StoreLimits
from netcheck.errors import StoreError
from netcheck.store.points import Point
from netcheck.store import outbox, retention
from netcheck.store.outbox import OutboxStats, StoredPoint
from netcheck.store.retention import DAY_MS, TableBound

FAULT_SLOW_WRITE_ENV = "NETCHECK_FAULT_STORE_WRITE_MS"
MAX_FAULT_SLOW_WRITE_MS = 10_000.0
SCHEMA_VERSION = 3
"""3: `stored_ms` on checks, windows and session events (retention by age); 2: session events."""
SCHEMA = """
CREATE TABLE IF NOT EXISTS checks (
    check_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    duration_s REAL NOT NULL,
    server TEXT,
    recommendation TEXT NOT NULL,
    level TEXT NOT NULL,
    report_json TEXT NOT NULL,
    stored_ms INTEGER
);
CREATE TABLE IF NOT EXISTS measurements (
    check_id TEXT NOT NULL REFERENCES checks(check_id),
    probe TEXT NOT NULL,
    started_at TEXT NOT NULL,
    duration_s REAL NOT NULL,
    status TEXT NOT NULL,
    fields_json TEXT NOT NULL,
    PRIMARY KEY (check_id, probe)
);
CREATE INDEX IF NOT EXISTS checks_started_at ON checks(started_at);
CREATE TABLE IF NOT EXISTS windows (
    window_id TEXT PRIMARY KEY,
    session_id TEXT,
    role TEXT,
    started_at TEXT NOT NULL,
    duration_s REAL NOT NULL,
    recommendation TEXT NOT NULL,
    level TEXT NOT NULL,
    report_json TEXT NOT NULL,
    stored_ms INTEGER
);
CREATE INDEX IF NOT EXISTS windows_session ON windows(session_id, started_at);
CREATE TABLE IF NOT EXISTS session_events (
    session_id TEXT NOT NULL,
    leg TEXT NOT NULL,
    type TEXT NOT NULL,
    at TEXT NOT NULL,
    cue TEXT NOT NULL DEFAULT '',
    event_json TEXT NOT NULL,
    stored_ms INTEGER,
    PRIMARY KEY (session_id, leg, type, at, cue)
);
"""


@dataclass(frozen=True)
class TableStats:
    """One table in `netcheck store stats`: what it keeps, its bounds, and what left it since the store was made."""

    kept: int
    max_rows: int | None
    """None: bounded through another table (a check's measurements go with it)."""
    retention_days: float | None
    dropped_by_age: int
    dropped_by_count: int


class LocalStore:
    """One SQLite file; safe to open from several processes (WAL, busy timeout)."""

    def __init__(self, path: Path, max_points: int | None = None, retention_days: float | None = None,
                 limits: StoreLimits = StoreLimits()) -> None:
        """`max_points`, `retention_days`: shorthands that override `limits`' own (tests, benchmarks)."""
        self.path = path
        self.limits = replace(limits, **{key: value for key, value in
                                         (("max_points", max_points), ("retention_days", retention_days))
                                         if value is not None})
        self.max_points = self.limits.max_points
        self.retention_ms = int(self.limits.retention_days * DAY_MS)
        self.slow_write_s = fault_slow_write_s(os.environ)
        """The fault hook's sleep inside every write transaction (0: none)."""
        self.moved_aside: Path | None = None
        """Set when the file was not a readable SQLite database: it was renamed to this, and a fresh store made."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = self._open(path)
            except sqlite3.DatabaseError as error:
                if isinstance(error, sqlite3.OperationalError):
                    raise  # locked, read-only, disk full: not corruption; the file is left alone
                self.moved_aside = _move_aside(path)
                self._db = self._open(path)
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"local store {path}: {error}") from None

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=10.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            # One transaction: two processes opening an old store upgrade it once, and a new store's
            # schema is one WAL commit, not one per table (a nearly full disk has room for it).
            db.executescript("BEGIN IMMEDIATE;" + SCHEMA + outbox.SCHEMA)
            try:
                retention.upgrade(db, _now_ms())
                if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                db.commit()
            except BaseException:
                db.rollback()
                raise
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def save_check(self, report: Mapping[str, Any], points: Sequence[Point] = ()) -> int:
        """Store a check report (the `netcheck check --json` form), its measurements and points atomically.

        Returns how many undelivered points had to be dropped to stay within `max_points`.
        """
        try:
            with self._db:
                self._slow_disk()
                now_ms = _now_ms()
                self._db.execute(
                    "INSERT OR REPLACE INTO checks (check_id, started_at, duration_s, server, recommendation, level, "
                    "report_json, stored_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (report["check_id"], report["started_at"], report["duration_s"], report.get("server"),
                     report["recommendation"], report["level"], json.dumps(report), now_ms),
                )
                for probe, fields in report["measurements"].items():
                    run = report["probe_runs"][probe]
                    self._db.execute(
                        "INSERT OR REPLACE INTO measurements VALUES (?, ?, ?, ?, ?, ?)",
                        (report["check_id"], probe, run["started_at"], run["duration_s"],
                         fields["status"], json.dumps(fields)),
                    )
                retention.prune(self._db, "checks", self._bound("checks"), now_ms, 1)
                return self._add_points(points)
        except sqlite3.Error as error:
            raise StoreError(f"local store {self.path}: {error}") from None

    def save_window(self, window: Mapping[str, Any], points: Sequence[Point],
                    session_events: Sequence[Mapping[str, Any]] = ()) -> int:
        """Store one agent window (its report, points and session events) atomically; returns points dropped."""
        try:
            with self._db:
                self._slow_disk()
                now_ms = _now_ms()
                self._add_session_events(session_events, now_ms)
                self._db.execute(
                    "INSERT OR REPLACE INTO windows (window_id, session_id, role, started_at, duration_s, "
                    "recommendation, level, report_json, stored_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (window["window_id"], window.get("session_id"), window.get("role"), window["started_at"],
                     window["duration_s"], window["recommendation"], window["level"], json.dumps(window), now_ms),
                )
                retention.prune(self._db, "windows", self._bound("windows"), now_ms, 1)
                return self._add_points(points)
        except sqlite3.Error as error:
            raise StoreError(f"local store {self.path}: {error}") from None

    def add_session_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Session events (summaries, warnings) of either leg, as `netcheck watch` receives them.

        The same event stored twice (the therapist's agent and `watch` on one machine) is kept once.
        """
        self._write(lambda: self._add_session_events(events, _now_ms()))

    def _add_session_events(self, events: Sequence[Mapping[str, Any]], now_ms: int) -> None:
        if not events:
            return
        self._db.executemany(
            "INSERT OR IGNORE INTO session_events (session_id, leg, type, at, cue, event_json, stored_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(event["session_id"], event["leg"], event["type"], event["at"], event.get("cue") or "",
              json.dumps(event), now_ms) for event in events],
        )
        retention.prune(self._db, "session_events", self._bound("session_events"), now_ms, len(events))

    def _bound(self, table: str) -> TableBound:
        return TableBound(getattr(self.limits, f"max_{table}"), getattr(self.limits, f"{table}_retention_days"))

    def table_stats(self) -> dict[str, TableStats]:
        """Per table: rows kept, bounds, rows dropped by age and by count since the store was made."""
        def read() -> dict[str, TableStats]:
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())

            def stats(table: str, max_rows: int | None, days: float | None) -> TableStats:
                kept = int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                return TableStats(kept, max_rows, days, counters.get(f"{table}_dropped_by_age", 0),
                                  counters.get(f"{table}_dropped_by_count", 0))

            tables = {table: stats(table, self._bound(table).max_rows, self._bound(table).retention_days)
                      for table in retention.PRUNED_TABLES}
            tables["measurements"] = stats("measurements", None, None)
            tables["points"] = stats("points", self.limits.max_points, self.limits.retention_days)
            return {name: tables[name] for name in ("checks", "measurements", "windows", "session_events", "points")}
        return self._read(read)

    def session_events(self, session_id: str) -> list[Any]:
        """A session's events, both legs, in time order. A row whose JSON does not parse (an older
        version's, a damaged one) comes as None: the report counts what it could not read."""
        rows = self._read(lambda: self._db.execute(
            "SELECT event_json FROM session_events WHERE session_id = ? ORDER BY at, leg, type", (session_id,)).fetchall())
        return [_json_or_none(row[0]) for row in rows]

    def session_checks(self, session_id: str) -> list[Any]:
        """The check reports attached to a session (a check link carrying its token), oldest first.
        A report that is not JSON is passed over (json_extract would fail the whole query)."""
        rows = self._read(lambda: self._db.execute(
            "SELECT report_json FROM checks WHERE CASE WHEN json_valid(report_json) "
            "THEN json_extract(report_json, '$.session_id') END = ? ORDER BY started_at", (session_id,)).fetchall())
        return [_json_or_none(row[0]) for row in rows]

    def add_points(self, points: Sequence[Point]) -> int:
        """Store points that belong to no check or window (the agent's self-metrics)."""
        return self._write(lambda: self._add_points(points))

    def _add_points(self, points: Sequence[Point]) -> int:
        outbox.insert_points(self._db, points)
        return outbox.enforce_limits(self._db, self.max_points, _now_ms() - self.retention_ms, len(points))

    # --- outbox ---------------------------------------------------------------------------

    def pending_points(self, limit: int) -> list[StoredPoint]:
        return self._read(lambda: outbox.pending(self._db, limit))

    def mark_delivered(self, ids: Sequence[int]) -> None:
        self._write(lambda: outbox.mark(self._db, ids, outbox.DELIVERED, _now_ms()))

    def mark_rejected(self, ids: Sequence[int]) -> None:
        self._write(lambda: outbox.mark(self._db, ids, outbox.REJECTED, _now_ms()))

    def outbox_stats(self) -> OutboxStats:
        return self._read(lambda: outbox.stats(self._db))

    def points_since(self, since_ms: int) -> Iterator[StoredPoint]:
        try:
            yield from outbox.points_since(self._db, since_ms)
        except sqlite3.Error as error:
            raise StoreError(f"local store {self.path}: {error}") from None

    def take_delivery_lease(self, ttl_s: float = 60.0) -> bool:
        """True when this process may deliver (no other live process is delivering from this store)."""
        def take() -> bool:
            self._db.execute("BEGIN IMMEDIATE")
            return outbox.take_lease(self._db, _now_ms(), int(ttl_s * 1000))
        return self._write(take)

    def release_delivery_lease(self) -> None:
        self._write(lambda: outbox.release_lease(self._db))

    def agent_id(self) -> str:
        """This installation's random id, made once: the `agent` tag of every point. No personal data."""
        def get_or_make() -> str:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT value FROM meta WHERE key = 'agent_id'").fetchone()
            if row:
                return str(row[0])
            agent_id = secrets.token_hex(6)
            self._db.execute("INSERT INTO meta VALUES ('agent_id', ?)", (agent_id,))
            return agent_id
        return self._write(get_or_make)

    def _write(self, action: Any) -> Any:
        try:
            with self._db:
                self._slow_disk()
                return action()
        except sqlite3.Error as error:
            raise StoreError(f"local store {self.path}: {error}") from None

    def _slow_disk(self) -> None:
        if self.slow_write_s:
            time.sleep(self.slow_write_s)

    def _read(self, action: Any) -> Any:
        try:
            return action()
        except sqlite3.Error as error:
            raise StoreError(f"local store {self.path}: {error}") from None

    def get_check(self, check_id: str) -> dict[str, Any] | None:
        """One stored check report by its id, or None."""
        row = self._read(lambda: self._db.execute(
            "SELECT report_json FROM checks WHERE check_id = ?", (check_id,)).fetchone())
        return json.loads(row[0]) if row else None

    def list_checks(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest checks first, as their stored reports."""
        rows = self._read(lambda: self._db.execute(
            "SELECT report_json FROM checks ORDER BY started_at DESC LIMIT ?", (limit,)).fetchall())
        return [json.loads(row[0]) for row in rows]


def _move_aside(path: Path) -> Path:
    """Rename a corrupted store (and its WAL files) out of the way, keeping it for inspection."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(f"{path}{suffix}")
        if candidate.exists():
            candidate.rename(Path(f"{aside}{suffix}"))
    return aside


def fault_slow_write_s(env: Mapping[str, str]) -> float:
    """The fault hook's delay in seconds; 0 when unset, and for anything but a number of 0–10,000 ms."""
    try:
        delay_ms = float(env.get(FAULT_SLOW_WRITE_ENV, "0"))
    except ValueError:
        return 0.0
    return delay_ms / 1000.0 if 0.0 <= delay_ms <= MAX_FAULT_SLOW_WRITE_MS else 0.0


def _json_or_none(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None


def _now_ms() -> int:
    return int(time.time() * 1000)
