"""The background agent as the tests start it: `cli.py agent` against a test's server, its InfluxDB
settings as environment variables (v1 for InfluxDB 1.x, v2 for VictoriaMetrics), and its exit."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from netcheck.store.local import LocalStore
from netcheck.store.points import Point
from tests.harness.servers import REPO, ServerProcess, subprocess_env
from tests.harness.tsdb import InfluxDB1

STORE = "netcheck.sqlite3"


def v1_env(influx: InfluxDB1, **changes: str) -> dict[str, str]:
    return {"NETCHECK_INFLUX_URL": influx.url, "NETCHECK_INFLUX_API": "v1",
            "NETCHECK_INFLUX_DATABASE": influx.database, "NETCHECK_INFLUX_USERNAME": influx.username,
            "NETCHECK_INFLUX_PASSWORD": influx.password, **changes}


def v2_env(url: str, **changes: str) -> dict[str, str]:
    return {"NETCHECK_INFLUX_URL": url, "NETCHECK_INFLUX_ORG": "clinic", "NETCHECK_INFLUX_BUCKET": "netcheck",
            "NETCHECK_INFLUX_TOKEN": "t0ken", **changes}


def start_agent(server: ServerProcess, home: Path, influx_env: dict[str, str], *args: str) -> subprocess.Popen:
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(REPO / "cli.py"), "agent", "--server", server.http_url, "--session", "sess-test", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=subprocess_env(NETCHECK_HOME=str(home), **influx_env),
    )


def finish(agent: subprocess.Popen, timeout_s: float = 60.0) -> tuple[int, str, str]:
    stdout, stderr = agent.communicate(timeout=timeout_s)
    return agent.returncode, stdout, stderr


def wait_for(condition, timeout_s: float, poll_s: float = 0.2) -> float:  # type: ignore[no-untyped-def]
    """Seconds until `condition()` held; fails the test after `timeout_s`."""
    start_s = time.monotonic()
    while not condition():
        if time.monotonic() - start_s > timeout_s:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(poll_s)
    return time.monotonic() - start_s


def measurements(points: list[Point]) -> set[str]:
    return {point.measurement for point in points}


def backlog(home: Path, count: int) -> None:
    """Points queued as after a long outage (the agent's own windows add to them)."""
    home.mkdir(parents=True, exist_ok=True)
    now_ms = int(time.time() * 1000) - count * 10
    with LocalStore(home / STORE, max_points=1_000_000) as store:
        agent_id = store.agent_id()
        store.add_points([Point("netcheck_udp", {"agent": agent_id, "kind": "session", "role": "client"},
                                {"rtt_p95_ms": 20.0 + i % 100 / 10, "packets_sent": 40, "session_id": "backlog"},
                                now_ms + i * 10) for i in range(count)])
