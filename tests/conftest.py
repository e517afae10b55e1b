"""Shared fixtures: a real `netcheck serve` on loopback, and a way to run the CLI as a user would."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.tsdb import InfluxDB1, VictoriaMetrics

REPO = Path(__file__).resolve().parent.parent
LOOPBACK_ICE = {"NETCHECK_ICE_HOST_ADDRESSES": "127.0.0.1"}
"""Media (ICE host candidates) stays on loopback in every test, never on the machine's own eth0 address."""


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for netcheck subprocesses: no NETCHECK_* of the caller, loopback-only ICE."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("NETCHECK_")}
    return {**env, **LOOPBACK_ICE, **extra}


@dataclass
class ServerProcess:
    """A `netcheck serve` subprocess and the addresses it printed."""

    process: subprocess.Popen
    http_url: str
    udp_host: str
    udp_port: int

    @property
    def udp_target(self) -> str:
        return f"{self.udp_host}:{self.udp_port}"


def start_serve(*extra_args: str, env: dict[str, str] | None = None) -> ServerProcess:
    """Start `netcheck serve` on free loopback ports and read the two lines it prints."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "cli.py"), "serve", "--bind", "127.0.0.1", "--http-port", "0",
         "--udp-port", "0", *extra_args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env or subprocess_env(),
    )
    assert process.stdout is not None
    lines = {}
    for _ in range(2):
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("netcheck serve did not start")
        kind, address = line.split()
        lines[kind] = address
    udp_host, udp_port = lines["udp"].rsplit(":", 1)
    return ServerProcess(process, f"http://{lines['http']}", udp_host, int(udp_port))


@contextlib.asynccontextmanager
async def local_app(app: Any) -> AsyncIterator[str]:
    """An aiohttp application serving on a free loopback port, in this event loop; yields its URL."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def stop(process: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s`."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    running = start_serve()
    yield running
    stop(running.process)


@pytest.fixture
def netcheck_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def run_cli(netcheck_home: Path):
    """Run `python cli.py ARGS` with its own NETCHECK_HOME; returns the CompletedProcess."""

    def run(*args: str, timeout: float = 60.0, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        env = subprocess_env(NETCHECK_HOME=str(netcheck_home), **(extra_env or {}))
        return subprocess.run([sys.executable, str(REPO / "cli.py"), *args], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=REPO)

    return run


@pytest.fixture
def influx() -> Iterator["InfluxDB1"]:
    """A real InfluxDB 1.6.7 (auth on, database `netcheck`) on a free loopback port, fresh per test."""
    from tests.tsdb import InfluxDB1

    with InfluxDB1() as running:
        yield running


@pytest.fixture
def vm() -> Iterator["VictoriaMetrics"]:
    """A real VictoriaMetrics (no dedup: duplicate samples stay visible) on a free loopback port."""
    from tests.tsdb import VictoriaMetrics

    with VictoriaMetrics() as running:
        yield running


@pytest.fixture(scope="session")
def grafana_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple["InfluxDB1", Any]]:
    """A real InfluxDB 1.6.7 filled once by real agents and checks (tests/grafana_fill.py, ≈ 35 s),
    shared by the fill's own test and the dashboard tests."""
    from tests.grafana_fill import fill_influx
    from tests.tsdb import InfluxDB1

    with InfluxDB1() as running:
        yield running, fill_influx(running, tmp_path_factory.mktemp("grafana-fill"))
