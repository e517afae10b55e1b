"""`netcheck_server`: a node's own load reaches a real InfluxDB (issue 16: what an admin watches)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import pytest

from netcheck.config import InfluxSettings
from netcheck.server.app import start_server
from netcheck.server.checks import CheckSettings
from netcheck.tokens import create_token
from tests.harness.tsdb import InfluxDB1

SECRET = b"node-metrics-secret-0123456789"
EVERY_S = 0.5
"""The test's interval (the node's default is NODE_METRICS_EVERY_S = 10 s)."""


def v1(influx: InfluxDB1) -> InfluxSettings:
    return InfluxSettings(url=influx.url, api="v1", database=influx.database, username=influx.username,  # type: ignore[call-arg]
                          password=influx.password, timeout_s=5.0)


async def a_busy_node(store_path: Path, influx: InfluxSettings | None) -> dict[str, int]:
    """A node with one watcher, 3 accepted posts of 2 events, 1 refused post; then 3 intervals more."""
    server = await start_server("127.0.0.1", 0, 0, secret=SECRET, checks=CheckSettings(store_path, influx=influx),
                                node_metrics_every_s=EVERY_S)
    url = f"{server.url}/v1/sessions/s1/events"
    client = {"Authorization": f"Bearer {create_token(SECRET, 's1', 'client', 600)}"}
    therapist = {"Authorization": f"Bearer {create_token(SECRET, 's1', 'therapist', 600)}"}
    at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")  # the hub takes times within a day of its clock
    event = {"type": "summary", "at": at, "window": {"index": 0, "window_s": 5.0}}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url, headers=therapist) as watcher:
                assert watcher.status == 200
                for _ in range(3):
                    async with http.post(url, data=json.dumps({"events": [event, event]}), headers=client) as answer:
                        assert answer.status == 202
                async with http.post(url, data=b"not json", headers=client) as answer:
                    assert answer.status == 400
                await asyncio.sleep(3 * EVERY_S + 0.5)  # points written while the watcher is open
                deadline_s = time.monotonic() + 10
                while server.checks and server.checks.store and server.checks.store.outbox_stats().outbox_pending \
                        and time.monotonic() < deadline_s:
                    await asyncio.sleep(0.1)
                assert server.checks is not None and server.checks.store is not None
                return {"pending": server.checks.store.outbox_stats().outbox_pending}
    finally:
        await server.close()


@pytest.mark.slow
def test_the_nodes_load_reaches_influxdb(tmp_path: Path, influx: InfluxDB1) -> None:
    run = asyncio.run(a_busy_node(tmp_path / "node.sqlite3", v1(influx)))
    assert run["pending"] == 0
    series = influx.query('SELECT * FROM "netcheck_server"')
    rows = [dict(zip(series[0]["columns"], values)) for values in series[0]["values"]] if series else []
    assert len(rows) >= 3, rows
    last = rows[-1]
    assert (last["hub_posts_total"], last["hub_events_total"], last["hub_posts_refused_total"]) == (3, 6, 1), last
    assert last["hub_watchers"] == 1 and last["hub_watchers_dropped_total"] == 0
    assert last["av_calls"] == 0 and last["av_refused_total"] == 0 and last["throughput_streams"] == 0
    assert last["session_tabs"] == 0
    assert 0 <= last["cpu_pct"] and last["rss_mb"] > 10 and last["agent"]


def test_without_influxdb_the_node_keeps_no_metrics(tmp_path: Path) -> None:
    """They would crowd the browser checks' points out of the bounded outbox, and nobody would read them."""
    run = asyncio.run(a_busy_node(tmp_path / "node.sqlite3", None))
    assert run["pending"] == 0
