"""The local store stays bounded (issue 23): checks (with their measurements), windows and session events
by age and by count, on a real SQLite file; what goes is counted, and `netcheck store stats` says so.

Age is the time a row was stored (`stored_ms`). A store "seeded with old rows" is made two ways: rows
written now whose `stored_ms` the test then sets back (what months of waiting would do), and a store
of the previous schema (version 2, no `stored_ms`) holding rows of long ago, as an upgrade finds it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from netcheck.config import StoreLimits
from netcheck.store.local import LocalStore
from netcheck.store.retention import DAY_MS, PRUNE_BATCH_ROWS
from tests.harness.servers import REPO, subprocess_env

NOW_MS = int(time.time() * 1000)
PROBES = ("udp", "system")


def check(number: int, started_at: str = "2026-11-29T10:00:00.000+00:00") -> dict[str, Any]:
    """A check report as the store keeps it: two probes, so two measurement rows."""
    return {"check_id": f"c{number:05d}", "started_at": started_at, "duration_s": 3.0, "server": "http://n:1",
            "recommendation": "video", "level": "good",
            "measurements": {probe: {"status": "ok"} for probe in PROBES},
            "probe_runs": {probe: {"started_at": started_at, "duration_s": 1.0} for probe in PROBES}}


def window(number: int) -> dict[str, Any]:
    return {"window_id": f"w{number:05d}", "session_id": "s1", "role": "client",
            "started_at": "2026-11-29T10:00:00+00:00", "duration_s": 5.0, "recommendation": "video", "level": "good"}


def event(number: int, at: str | None = None) -> dict[str, Any]:
    return {"type": "summary", "session_id": "s1", "leg": "client",
            "at": at or f"2026-11-29T10:{number // 60:02d}:{number % 60:02d}+00:00", "window": {"index": number}}


def rows(path: Path, query: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(query).fetchall()
    finally:
        db.close()


def set_stored_days_ago(path: Path, table: str, days: float, where: str) -> None:
    """Seed: these rows were stored `days` ago (the store's own clock), as if the store had waited that long."""
    db = sqlite3.connect(path)
    with db:
        db.execute(f"UPDATE {table} SET stored_ms = ? WHERE {where}", (NOW_MS - int(days * DAY_MS),))
    db.close()


# --- by count ------------------------------------------------------------------------------------------


def test_checks_beyond_the_count_go_oldest_first_with_their_measurements(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with LocalStore(path, limits=StoreLimits(max_checks=10)) as store:
        for number in range(25):
            store.save_check(check(number))
        stats = store.table_stats()
    assert [row[0] for row in rows(path, "SELECT check_id FROM checks ORDER BY rowid")] == \
        [f"c{number:05d}" for number in range(15, 25)]  # the newest ten
    assert rows(path, "SELECT COUNT(*), COUNT(DISTINCT check_id) FROM measurements") == [(20, 10)]
    assert rows(path, "SELECT COUNT(*) FROM measurements WHERE check_id NOT IN (SELECT check_id FROM checks)") == [(0,)]
    assert (stats["checks"].kept, stats["checks"].max_rows, stats["checks"].dropped_by_count) == (10, 10, 15)
    assert (stats["measurements"].kept, stats["measurements"].dropped_by_count) == (20, 30)
    assert stats["checks"].dropped_by_age == 0


def test_windows_and_session_events_beyond_the_count_go_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with LocalStore(path, limits=StoreLimits(max_windows=10, max_session_events=12)) as store:
        for number in range(30):
            store.save_window(window(number), [], [event(number)])  # an agent's window with its session event
        store.add_session_events([event(number) for number in range(30, 40)])  # `watch` or the node's record
        stats = store.table_stats()
        kept_events = [item["window"]["index"] for item in store.session_events("s1")]
    assert [row[0] for row in rows(path, "SELECT window_id FROM windows ORDER BY rowid")] == \
        [f"w{number:05d}" for number in range(20, 30)]
    assert kept_events == list(range(28, 40))
    assert (stats["windows"].kept, stats["windows"].dropped_by_count) == (10, 20)
    assert (stats["session_events"].kept, stats["session_events"].dropped_by_count) == (12, 28)


# --- by age --------------------------------------------------------------------------------------------


def test_rows_stored_before_their_retention_leave_at_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    limits = StoreLimits(checks_retention_days=90, windows_retention_days=30, session_events_retention_days=90)
    with LocalStore(path, limits=limits) as store:
        for number in range(6):
            store.save_check(check(number))
            store.save_window(window(number), [], [event(number)])
    set_stored_days_ago(path, "checks", 91, "check_id IN ('c00000', 'c00001', 'c00002')")
    set_stored_days_ago(path, "checks", 89, "check_id = 'c00003'")  # within its 90 days: kept
    set_stored_days_ago(path, "windows", 31, "window_id IN ('w00000', 'w00001')")
    set_stored_days_ago(path, "session_events", 95, "json_extract(event_json, '$.window.index') < 4")

    with LocalStore(path, limits=limits) as store:  # opening deletes nothing: only writes prune
        assert store.table_stats()["checks"].kept == 6
        store.save_check(check(6))
        store.save_window(window(6), [], [event(6)])
        stats = store.table_stats()
    assert [row[0] for row in rows(path, "SELECT check_id FROM checks ORDER BY rowid")] == \
        ["c00003", "c00004", "c00005", "c00006"]
    assert rows(path, "SELECT COUNT(*) FROM measurements") == [(8,)]
    assert [row[0] for row in rows(path, "SELECT window_id FROM windows ORDER BY rowid")] == \
        ["w00002", "w00003", "w00004", "w00005", "w00006"]
    assert (stats["checks"].dropped_by_age, stats["measurements"].dropped_by_age) == (3, 6)
    assert (stats["windows"].dropped_by_age, stats["session_events"].dropped_by_age) == (2, 4)
    assert stats["checks"].dropped_by_count == stats["windows"].dropped_by_count == 0


V2_SCHEMA = """
CREATE TABLE checks (check_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, duration_s REAL NOT NULL, server TEXT,
    recommendation TEXT NOT NULL, level TEXT NOT NULL, report_json TEXT NOT NULL);
CREATE TABLE measurements (check_id TEXT NOT NULL REFERENCES checks(check_id), probe TEXT NOT NULL,
    started_at TEXT NOT NULL, duration_s REAL NOT NULL, status TEXT NOT NULL, fields_json TEXT NOT NULL,
    PRIMARY KEY (check_id, probe));
CREATE INDEX checks_started_at ON checks(started_at);
CREATE TABLE windows (window_id TEXT PRIMARY KEY, session_id TEXT, role TEXT, started_at TEXT NOT NULL,
    duration_s REAL NOT NULL, recommendation TEXT NOT NULL, level TEXT NOT NULL, report_json TEXT NOT NULL);
CREATE INDEX windows_session ON windows(session_id, started_at);
CREATE TABLE session_events (session_id TEXT NOT NULL, leg TEXT NOT NULL, type TEXT NOT NULL, at TEXT NOT NULL,
    cue TEXT NOT NULL DEFAULT '', event_json TEXT NOT NULL, PRIMARY KEY (session_id, leg, type, at, cue));
PRAGMA user_version=2;
"""
"""The tables of schema version 2 (netcheck before issue 23), as such a store holds them."""


def test_a_store_of_the_previous_schema_is_upgraded_and_its_old_rows_age_out(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    long_ago, recent = "2026-06-01T08:00:00.000+02:00", time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    db = sqlite3.connect(path)
    db.executescript(V2_SCHEMA)
    with db:
        for number, started_at in ((0, long_ago), (1, long_ago), (2, recent)):
            report = check(number, started_at)
            db.execute("INSERT INTO checks VALUES (?, ?, 3.0, NULL, 'video', 'good', ?)",
                       (report["check_id"], started_at, json.dumps(report)))
            db.execute("INSERT INTO measurements VALUES (?, 'udp', ?, 1.0, 'ok', '{}')", (report["check_id"], started_at))
        for number, at in ((0, long_ago), (1, "not a date"), (2, recent)):  # a peer's unreadable `at`: kept, as now
            db.execute("INSERT INTO session_events VALUES ('s1', 'client', 'summary', ?, '', ?)",
                       (at, json.dumps(event(number, at))))
    db.close()

    with LocalStore(path) as store:  # the defaults: 90 days for checks and session events
        assert rows(path, "PRAGMA user_version") == [(3,)]
        assert store.table_stats()["checks"].kept == 3  # upgraded, nothing deleted yet
        store.save_check(check(3))
        store.add_session_events([event(3)])
        stats = store.table_stats()
        kept_events = [item["at"] for item in store.session_events("s1")]
    assert [row[0] for row in rows(path, "SELECT check_id FROM checks ORDER BY rowid")] == ["c00002", "c00003"]
    assert rows(path, "SELECT check_id FROM measurements ORDER BY check_id") == [("c00002",), ("c00003",), ("c00003",)]
    assert (stats["checks"].dropped_by_age, stats["measurements"].dropped_by_age) == (2, 2)
    assert sorted(kept_events) == sorted(["not a date", recent, event(3)["at"]])
    assert stats["session_events"].dropped_by_age == 1


# --- batches -------------------------------------------------------------------------------------------


def test_a_store_far_over_its_bound_comes_back_in_batches_not_in_one_stop(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    over = 3 * PRUNE_BATCH_ROWS
    with LocalStore(path) as store:
        for number in range(over + 10):
            store.save_check(check(number))
    with LocalStore(path, limits=StoreLimits(max_checks=10)) as store:  # the bound lowered
        kept = []
        for number in range(over + 10, over + 14):
            store.save_check(check(number))
            kept.append(store.table_stats()["checks"].kept)
    # each write: its own row in, at most PRUNE_BATCH_ROWS out, until within the bound
    assert kept == [over + 10 + writes - writes * PRUNE_BATCH_ROWS for writes in (1, 2, 3)] + [10]


# --- netcheck store stats -----------------------------------------------------------------------------


def test_store_stats_shows_each_table_its_bounds_and_what_was_dropped(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[store]\nmax_checks = 10\nchecks_retention_days = 7\nmax_windows = 20\n")
    with LocalStore(tmp_path / "netcheck.sqlite3", limits=StoreLimits(max_checks=10)) as store:
        for number in range(12):
            store.save_check(check(number))
    env = subprocess_env(NETCHECK_HOME=str(tmp_path))
    answer = subprocess.run([sys.executable, str(REPO / "cli.py"), "store", "stats", "--json"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert answer.returncode == 0, answer.stderr
    stats = json.loads(answer.stdout)
    assert {"points_total", "outbox_pending", "delivered", "dropped", "rejected"} <= set(stats)  # the contract's
    assert stats["tables"]["checks"] == {"kept": 10, "max_rows": 10, "retention_days": 7.0,
                                         "dropped_by_age": 0, "dropped_by_count": 2}
    assert stats["tables"]["measurements"] == {"kept": 20, "max_rows": None, "retention_days": None,
                                               "dropped_by_age": 0, "dropped_by_count": 4}
    assert stats["tables"]["windows"]["max_rows"] == 20 and stats["tables"]["session_events"]["max_rows"] == 200_000
    assert stats["tables"]["points"]["max_rows"] == 200_000
    text = subprocess.run([sys.executable, str(REPO / "cli.py"), "store", "stats"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert text.returncode == 0, text.stderr
    line = next(line for line in text.stdout.splitlines() if line.startswith("checks "))
    assert line.split() == ["checks", "10", "10", "7", "days", "0", "2"]


@pytest.mark.parametrize(("text", "message"), [
    ("[store]\nmax_session_events = 100000001\n", "store.max_session_events: must be a number in"),
    ("[store]\nmax_checks = 5\n", "store.max_checks: must be a number in 10..1e+08 rows, got 5"),
    ("[store]\nwindows_retention_days = 0\n", "store.windows_retention_days: must be a number in"),
    ("[store]\nsession_events_retention_days = nan\n", "store.session_events_retention_days: must be a number in"),
    ("[serve]\nanonymous_check_every_s = -1\n", "serve.anonymous_check_every_s: must be a number in"),
    ("[serve]\ncheck_rate = 1\n", "serve.check_rate: unknown key"),
])
def test_bad_store_and_serve_keys_are_one_line_naming_the_key_exit_2(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    answer = subprocess.run([sys.executable, str(REPO / "cli.py"), "store", "stats"], capture_output=True,
                            text=True, timeout=60, env=subprocess_env(NETCHECK_HOME=str(tmp_path)))
    assert answer.returncode == 2
    assert answer.stderr.count("\n") == 1 and message in answer.stderr, answer.stderr
