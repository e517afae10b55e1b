"""Throughput runs in a network namespace: `netcheck serve` on the veth's root side, the probe in the
namespace; shared by tests/test_throughput.py and benchmarks/throughput_accuracy.py."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.harness.netns import ClientNamespace
from tests.harness.servers import REPO, stop, subprocess_env

MEGABIT = 1000  # kbit
TCP_GOODPUT = 1448 / 1514
"""Payload per full Ethernet frame (TCP timestamps on): what a tbf rate leaves for the data."""


def flush_tcp_metrics(namespace: ClientNamespace) -> None:
    """Linux caches ssthresh per destination; a cached low one keeps the next test's streams from
    filling the queue. Forget it on both ends so every run starts like a first contact."""
    subprocess.run(["ip", "tcp_metrics", "flush", "all"], capture_output=True)
    namespace.run(["ip", "tcp_metrics", "flush", "all"], capture_output=True)


@contextmanager
def server_on_root_side(namespace: ClientNamespace, home: Path) -> Iterator[str]:
    """`netcheck serve` on the veth's root side; yields its HTTP URL, with TCP metrics forgotten."""
    env = subprocess_env(NETCHECK_HOME=str(home), NETCHECK_ICE_HOST_ADDRESSES=namespace.root_address)
    server = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "serve", "--bind", namespace.root_address,
                               "--http-port", "0", "--udp-port", "0"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        http = server.stdout.readline().split()[1]
        server.stdout.readline()
        flush_tcp_metrics(namespace)
        yield f"http://{http}"
    finally:
        stop(server)


def netcheck_in(namespace: ClientNamespace, home: Path, *args: str) -> tuple[int, dict, str]:
    """`python cli.py ARGS` in the namespace; (exit code, parsed JSON, stderr)."""
    done = namespace.run([sys.executable, str(REPO / "cli.py"), *args], capture_output=True, text=True,
                         env=subprocess_env(NETCHECK_HOME=str(home)), timeout=60)
    return done.returncode, json.loads(done.stdout or "{}"), done.stderr


def throughput_in(namespace: ClientNamespace, home: Path, *extra: str) -> tuple[int, dict, str]:
    """Run `netcheck serve` on the root side and `netcheck probe throughput` in the namespace."""
    with server_on_root_side(namespace, home) as url:
        return netcheck_in(namespace, home, "probe", "throughput", "--server", url, "--json", *extra)
