"""A real `netcheck serve` on loopback for tests and benchmarks: start it, read its ports, stop it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
LOOPBACK_ICE = {"NETCHECK_ICE_HOST_ADDRESSES": "127.0.0.1"}
"""Media (ICE host candidates) stays on loopback in every test, never on the machine's own eth0 address."""


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for netcheck subprocesses: no NETCHECK_* of the caller, loopback-only ICE, and
    no COLUMNS/LINES (pytest-xdist's workers set 80x24: a table in a 120-column tmux was drawn at 80)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("NETCHECK_") and key not in ("COLUMNS", "LINES")}
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
