"""Compare what the local store holds with what reached a real server: nothing missing, nothing twice,
every field value equal; and count what a client wrote more than once (through a recording proxy)."""

from __future__ import annotations

import math
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from netcheck.store.points import Point
from netcheck.store.outbox import points_since
from tests.harness.http_faults import RecordedExchange
from tests.harness.tsdb import InfluxDB1, VictoriaMetrics


def stored_points(store_path: Path) -> list[Point]:
    """Every point in a local store, read the way an outside reader would (read-only connection).

    A store an agent is still creating (the file made, its tables not yet) holds no point: the
    tests poll this while the agent starts."""
    db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=10.0)
    try:
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'points'").fetchone() is None:
            return []
        return [row.point for row in points_since(db, 0)]
    finally:
        db.close()


def outbox_pending(store_path: Path) -> int:
    db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=10.0)
    try:
        return int(db.execute("SELECT COUNT(*) FROM points WHERE state = 0").fetchone()[0])
    finally:
        db.close()


def assert_influx_has_exactly(influx: InfluxDB1, points: list[Point]) -> None:
    """Every point is in InfluxDB with equal fields; InfluxDB holds no other netcheck point."""
    by_measurement: dict[str, list[Point]] = {}
    for point in points:
        by_measurement.setdefault(point.measurement, []).append(point)
    for measurement, expected in by_measurement.items():
        series = influx.query(f'SELECT * FROM "{measurement}"')
        rows = [dict(zip(series[0]["columns"], values)) for values in series[0]["values"]] if series else []
        assert len(rows) == len(expected), f"{measurement}: {len(rows)} in InfluxDB, {len(expected)} stored"
        tag_keys = {key for point in expected for key in point.tags}
        server = {(row["time"], tuple(sorted((k, row[k]) for k in tag_keys if row.get(k) is not None))): row
                  for row in rows}
        for point in expected:
            row = server.get((point.time_ms, tuple(sorted(point.tags.items()))))
            assert row is not None, f"missing in InfluxDB: {point}"
            for name, value in point.fields.items():
                assert _same(row[name], value), f"{measurement}.{name} at {point.time_ms}: {row[name]!r} != {value!r}"


def assert_victoria_has_exactly(vm: VictoriaMetrics, points: list[Point]) -> None:
    """Every numeric field of every point is one sample in VictoriaMetrics (no duplicates) with its value."""
    samples = vm.samples()
    counts = Counter((name, labels, time_ms) for name, labels, time_ms, _ in samples)
    duplicated = [key for key, count in counts.items() if count > 1]
    assert not duplicated, f"{len(duplicated)} duplicate samples, e.g. {duplicated[:3]}"
    values = {(name, labels, time_ms): value for name, labels, time_ms, value in samples}
    expected_keys = set()
    for point in points:
        labels = tuple(sorted(point.tags.items()))
        for name, value in point.fields.items():
            key = (f"{point.measurement}_{name}", labels, point.time_ms)
            expected_keys.add(key)
            assert key in values, f"missing in VictoriaMetrics: {key}"
            if not isinstance(value, str):  # VictoriaMetrics stores string fields as 0
                assert _same(values[key], float(value)), f"{key}: {values[key]} != {value}"
    extra = set(values) - expected_keys
    assert not extra, f"{len(extra)} samples nobody stored, e.g. {sorted(extra)[:3]}"


def _same(server_value: object, stored: object) -> bool:
    if isinstance(stored, float) or isinstance(server_value, float):
        return math.isclose(float(server_value), float(stored), rel_tol=1e-12, abs_tol=1e-12)  # type: ignore[arg-type]
    return server_value == stored


def acknowledged_writes(exchanges: list[RecordedExchange]) -> list[list[str]]:
    """The line-protocol lines of each write the server acknowledged (2xx), in arrival order."""
    return [exchange.decoded_body().decode().splitlines() for exchange in exchanges
            if exchange.method == "POST" and "write" in exchange.path and 200 <= exchange.status < 300]


def series_and_time(line: str) -> tuple[str, str]:
    """(measurement and tags, timestamp) of a line-protocol line: what makes a point one point."""
    series = re.split(r"(?<!\\) ", line, maxsplit=1)[0]  # tag values escape their spaces
    return series, line.rsplit(" ", 1)[1]


@dataclass(frozen=True)
class Resends:
    """Which acknowledged writes carried points an earlier acknowledged write had already carried."""

    batches: int
    """Writes that re-sent at least one point."""
    points: int
    """Points written more than once (counted once each)."""
    changed: int
    """Re-sent points whose line differed from the first send (not idempotent); must be 0."""


def count_resends(writes: list[list[str]]) -> Resends:
    first_line: dict[tuple[str, str], str] = {}
    resent: set[tuple[str, str]] = set()
    batches = changed = 0
    for lines in writes:
        repeated = False
        for line in lines:
            key = series_and_time(line)
            if key in first_line:
                repeated = True
                resent.add(key)
                changed += first_line[key] != line
            else:
                first_line[key] = line
        batches += repeated
    return Resends(batches, len(resent), changed)
