"""Throughput and bufferbloat against the kernel's ground truth: tbf caps on a veth between namespaces."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO, stop, subprocess_env
from tests.netns import ClientNamespace, Tbf

pytestmark = pytest.mark.slow

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


@pytest.fixture
def capped_8_2() -> Iterator[ClientNamespace]:
    with ClientNamespace(up=Tbf(2 * MEGABIT), down=Tbf(8 * MEGABIT)) as namespace:
        yield namespace


def test_8_down_2_up_is_measured_within_10_percent(capped_8_2, tmp_path) -> None:
    code, result, stderr = throughput_in(capped_8_2, tmp_path, "--duration", "10s")
    assert code == 0, stderr
    assert result["download_mbps"] == pytest.approx(8 * TCP_GOODPUT, rel=0.10), result
    assert result["upload_mbps"] == pytest.approx(2 * TCP_GOODPUT, rel=0.10), result
    assert result["bytes_down"] > 1e6 and result["bytes_up"] > 2e5


def test_deep_queue_shows_bufferbloat(tmp_path) -> None:
    deep = Tbf(2 * MEGABIT, limit_bytes=2 * MEGABIT * 1000 // 8)  # one second of queue
    with ClientNamespace(up=deep, down=Tbf(8 * MEGABIT, limit_bytes=8 * MEGABIT * 1000 // 8)) as namespace:
        code, result, stderr = throughput_in(namespace, tmp_path)
    assert code == 0, stderr
    assert result["bufferbloat_ms"] >= 100, result
    assert result["loaded_rtt_up_ms"] >= 300, result


def test_shallow_queue_keeps_bufferbloat_small(tmp_path) -> None:
    shallow = dict(burst_bytes=4000, limit_bytes=6000)  # a few packets: an AQM-like short queue
    with ClientNamespace(up=Tbf(8 * MEGABIT, **shallow), down=Tbf(8 * MEGABIT, **shallow)) as namespace:
        code, result, stderr = throughput_in(namespace, tmp_path)
    assert code == 0, stderr
    assert result["bufferbloat_ms"] < 30, result


def test_check_on_a_bloated_link_says_why_the_timing_suffers(tmp_path) -> None:
    """Must show 1: the deep queue's bufferbloat reaches the verdict's timing cue and its advice."""
    deep = Tbf(2 * MEGABIT, limit_bytes=2 * MEGABIT * 1000 // 8)
    with ClientNamespace(up=deep, down=Tbf(8 * MEGABIT, limit_bytes=8 * MEGABIT * 1000 // 8)) as namespace:
        with server_on_root_side(namespace, tmp_path) as url:
            code, report, stderr = netcheck_in(namespace, tmp_path, "check", "--server", url, "--no-av", "--json")
    assert report, stderr
    assert report["measurements"]["throughput"]["bufferbloat_ms"] >= 100, report["measurements"]["throughput"]
    timing = report["cues"]["conversational_timing"]
    assert timing["level"] == "poor" and "under load" in timing["metrics"]["rtt_p95_ms"]["source"], timing
    assert any(line.startswith("Delay rises from") for line in report["advice"]), report["advice"]
    assert (report["recommendation"], code) == ("phone", 4)
