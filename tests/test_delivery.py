"""Delivery from the outbox to real servers: InfluxDB 1.6.7 (v1 /write) and VictoriaMetrics (v2 API).

Faults a real server cannot be made to produce on demand (503 twice, 429 with Retry-After, a v2
"bucket not found") come from HttpFaultProxy, a named fake in front of the real server.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from netcheck.config import InfluxSettings
from netcheck.store.delivery import Deliverer
from netcheck.store.points import Point
from netcheck.store.influx import WriteError, make_writer
from netcheck.store.local import LocalStore
from tests.harness.delivered import assert_influx_has_exactly, assert_victoria_has_exactly, stored_points
from tests.harness.http_faults import HttpFaultProxy
from tests.harness.ports import free_port
from tests.harness.tsdb import InfluxDB1, VictoriaMetrics

NOW_MS = int(time.time() * 1000)
V2_NOT_FOUND = b'{"code":"not found","message":"bucket \\"nope\\" not found"}'
"""What InfluxDB 2.x answers for an unknown bucket (it is not installable here; VictoriaMetrics accepts any bucket)."""


SHARD_GROUP_MS = 7 * 86_400_000
"""InfluxDB 1.x keeps a field's type per shard group: 7 days from Monday 00:00 UTC (Go's zero time)."""
MIDDLE_OF_LAST_SHARD_GROUP_MS = (NOW_MS - 4 * 86_400_000) // SHARD_GROUP_MS * SHARD_GROUP_MS + 4 * 86_400_000 \
    - SHARD_GROUP_MS // 2
"""Thursday noon of last week: points around it share one shard group whatever the time of the run."""


def sample_points(count: int, agent: str = "t1", start_ms: int = NOW_MS - 10_000_000) -> list[Point]:
    return [Point("netcheck_udp", {"agent": agent, "role": "client", "status": "ok"},
                  {"rtt_p95_ms": 10.0 + i / 7, "packets_sent": 40, "tiny_ms": 1e-7 * (i + 1),
                   "session_id": f"s{i % 3}", "udp_blocked": i % 2 == 0}, start_ms + i * 5000)
            for i in range(count)]


def v1_settings(influx: InfluxDB1, url: str | None = None, **changes: str) -> InfluxSettings:
    values = {"url": url or influx.url, "api": "v1", "database": influx.database, "username": influx.username,
              "password": influx.password, "timeout_s": 5.0, **changes}
    return InfluxSettings(**values)  # type: ignore[arg-type]


def v2_settings(url: str, **changes: object) -> InfluxSettings:
    values = {"url": url, "api": "v2", "org": "clinic", "bucket": "netcheck", "token": "t0ken", "timeout_s": 5.0,
              **changes}
    return InfluxSettings(**values)  # type: ignore[arg-type]


class Harness:
    """A store with points, a deliverer, and the events it reported."""

    def __init__(self, path: Path, settings: InfluxSettings, batch_size: int = 5000) -> None:
        self.store = LocalStore(path)
        self.events: list[str] = []
        self.deliverer = Deliverer(self.store, make_writer(settings), batch_size, self.events.append,
                                   rng=random.Random(1))

    def deliver(self) -> int:
        return asyncio.run(self.deliverer.deliver_pending())

    def close(self) -> None:
        self.deliverer.close()
        self.store.close()




def test_v1_to_influxdb_delivers_every_point_with_equal_values(tmp_path: Path, influx: InfluxDB1) -> None:
    harness = Harness(tmp_path / "s.sqlite3", v1_settings(influx), batch_size=400)
    harness.store.add_points(sample_points(1000))
    assert harness.deliver() == 1000
    stats = harness.store.outbox_stats()
    harness.close()
    assert (stats.outbox_pending, stats.delivered) == (0, 1000)
    assert_influx_has_exactly(influx, stored_points(tmp_path / "s.sqlite3"))


def test_v2_to_victoria_metrics_delivers_every_point_once(tmp_path: Path, vm: VictoriaMetrics) -> None:
    harness = Harness(tmp_path / "s.sqlite3", v2_settings(vm.url), batch_size=300)
    harness.store.add_points(sample_points(1000))
    assert harness.deliver() == 1000
    assert harness.deliver() == 0  # nothing is sent twice
    harness.close()
    assert_victoria_has_exactly(vm, stored_points(tmp_path / "s.sqlite3"))


@pytest.mark.parametrize("status", [500, 503, 429])
def test_5xx_and_429_are_retried_until_delivered_once(tmp_path: Path, vm: VictoriaMetrics, status: int) -> None:
    with HttpFaultProxy(vm.url) as proxy:
        harness = Harness(tmp_path / "s.sqlite3", v2_settings(proxy.url))
        harness.store.add_points(sample_points(50))
        proxy.fail_next(2, status, headers={"Retry-After": "7"} if status == 429 else None)
        for attempt in range(2):
            with pytest.raises(WriteError) as failure:
                harness.deliver()
            assert failure.value.retryable and failure.value.status == status
        if status == 429:
            assert harness.deliverer.retry_delay_s(failure.value) >= 7.0
        assert harness.deliver() == 50
        assert [request.status for request in proxy.requests] == [status, status, 204]
        assert len(harness.events) == 2  # "unavailable" once, "reachable again" once
        harness.close()
    assert_victoria_has_exactly(vm, stored_points(tmp_path / "s.sqlite3"))


def test_network_errors_are_retried(tmp_path: Path) -> None:
    harness = Harness(tmp_path / "s.sqlite3", v2_settings(f"http://127.0.0.1:{free_port()}"))
    harness.store.add_points(sample_points(5))
    for _ in range(3):
        with pytest.raises(WriteError) as failure:
            harness.deliver()
        assert failure.value.retryable and failure.value.status is None
    assert harness.deliverer.counters.write_errors == 3
    assert harness.deliverer.counters.paused_reason is None
    assert len(harness.events) == 1 and "retrying" in harness.events[0]
    assert harness.store.outbox_stats().outbox_pending == 5
    harness.close()


@pytest.mark.parametrize("case", ["wrong password", "unknown database"])
def test_v1_configuration_errors_are_reported_once_and_not_retried(
        tmp_path: Path, influx: InfluxDB1, case: str) -> None:
    with HttpFaultProxy(influx.url) as proxy:
        changes = {"password": "wrong"} if case == "wrong password" else {"database": "nope"}
        harness = Harness(tmp_path / "s.sqlite3", v1_settings(influx, url=proxy.url, **changes))
        harness.store.add_points(sample_points(20))
        for _ in range(3):
            assert harness.deliver() == 0  # no exception: nothing to retry
        expected = 401 if case == "wrong password" else 404
        assert [request.status for request in proxy.requests] == [expected]  # tried once, never again
        assert len(harness.events) == 1
        message = harness.events[0]
        assert f"HTTP {expected}" in message and "paused" in message
        assert ("credentials" in message) if expected == 401 else ("no such bucket or database" in message)
        assert harness.store.outbox_stats().outbox_pending == 20  # kept for after the fix
        harness.close()


def test_v2_wrong_token_is_a_configuration_error(tmp_path: Path) -> None:
    with VictoriaMetrics(extra_args=("-httpAuth.username=admin", "-httpAuth.password=s3cret")) as secured:
        harness = Harness(tmp_path / "s.sqlite3", v2_settings(secured.url, token="wrong"))
        harness.store.add_points(sample_points(3))
        assert harness.deliver() == 0 and harness.deliver() == 0
        assert harness.deliverer.counters.write_errors == 1
        assert len(harness.events) == 1 and "HTTP 401" in harness.events[0]
        harness.close()


def test_v2_unknown_bucket_is_a_configuration_error(tmp_path: Path, vm: VictoriaMetrics) -> None:
    with HttpFaultProxy(vm.url) as proxy:
        proxy.fail_always(404, body=V2_NOT_FOUND)
        harness = Harness(tmp_path / "s.sqlite3", v2_settings(proxy.url, bucket="nope"))
        harness.store.add_points(sample_points(3))
        assert harness.deliver() == 0 and harness.deliver() == 0
        assert len(proxy.requests) == 1
        assert len(harness.events) == 1 and "HTTP 404" in harness.events[0] and "not found" in harness.events[0]
        harness.close()


def test_a_refused_point_is_set_aside_and_the_rest_flows(tmp_path: Path, influx: InfluxDB1) -> None:
    """InfluxDB refuses a field whose type changed (400 partial write); only that point is rejected.

    All points lie in one shard group: across a group's boundary (Monday 00:00 UTC) the type is
    another group's to set, and a run at 02:45 on a Monday once saw 16 good points refused."""
    harness = Harness(tmp_path / "s.sqlite3", v1_settings(influx))
    good = sample_points(64, start_ms=MIDDLE_OF_LAST_SHARD_GROUP_MS)
    bad = Point("netcheck_udp", {"agent": "t1", "role": "client", "status": "ok"},
                {"packets_sent": "forty"}, MIDDLE_OF_LAST_SHARD_GROUP_MS + 5_000_000)
    harness.store.add_points(good[:40] + [bad] + good[40:])
    assert harness.deliver() == 64
    stats = harness.store.outbox_stats()
    assert (stats.outbox_pending, stats.delivered, stats.rejected) == (0, 64, 1)
    assert len(harness.events) == 1 and "rejected" in harness.events[0]
    harness.close()
    assert_influx_has_exactly(influx, good)


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    deliverer = Deliverer(None, None, rng=random.Random(7))  # type: ignore[arg-type]
    delays = []
    for failures in range(1, 10):
        deliverer.counters.consecutive_failures = failures
        delays.append(deliverer.retry_delay_s())
    ceilings = [min(15.0, 2.0 ** (n - 1)) for n in range(1, 10)]
    assert all(ceiling / 2 <= delay <= ceiling for delay, ceiling in zip(delays, ceilings))
    assert len({round(delay, 6) for delay in delays[5:]}) == len(delays[5:])  # jittered, not lock-step
    assert deliverer.retry_delay_s(WriteError("x", 503, retry_after_s=100_000)) == 300.0
