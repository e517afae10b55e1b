"""The local store: SQLite in WAL mode, every check and every measurement, always written first."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from netcheck.errors import StoreError

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS checks (
    check_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    duration_s REAL NOT NULL,
    server TEXT,
    recommendation TEXT NOT NULL,
    level TEXT NOT NULL,
    report_json TEXT NOT NULL
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
"""


class LocalStore:
    """One SQLite file; safe to open from several processes (WAL, busy timeout)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"local store {path}: {error}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def save_check(self, report: Mapping[str, Any]) -> None:
        """Store a check report (the `netcheck check --json` form) and its measurements atomically."""
        try:
            with self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO checks VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (report["check_id"], report["started_at"], report["duration_s"], report.get("server"),
                     report["recommendation"], report["level"], json.dumps(report)),
                )
                for probe, fields in report["measurements"].items():
                    run = report["probe_runs"][probe]
                    self._db.execute(
                        "INSERT OR REPLACE INTO measurements VALUES (?, ?, ?, ?, ?, ?)",
                        (report["check_id"], probe, run["started_at"], run["duration_s"],
                         fields["status"], json.dumps(fields)),
                    )
        except sqlite3.Error as error:
            raise StoreError(f"local store {self.path}: {error}") from None

    def list_checks(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest checks first, as their stored reports."""
        try:
            rows = self._db.execute(
                "SELECT report_json FROM checks ORDER BY started_at DESC LIMIT ?", (limit,)
            ).fetchall()
        except sqlite3.Error as error:
            raise StoreError(f"local store {self.path}: {error}") from None
        return [json.loads(row[0]) for row in rows]
