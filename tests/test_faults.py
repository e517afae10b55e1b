"""Faults a user will meet (issue 8): the server dies in the middle of a check."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.servers import REPO, start_serve, subprocess_env


@pytest.mark.slow
def test_server_killed_mid_check_gives_a_partial_report_with_clear_statuses(tmp_path: Path) -> None:
    server = start_serve()
    check = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "check", "--server", server.http_url, "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=subprocess_env(NETCHECK_HOME=str(tmp_path)))
    time.sleep(2.5)  # the first phase (UDP, A/V, reach) is under way
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    stdout, stderr = check.communicate(timeout=60)
    assert check.returncode in (3, 4, 5), stderr  # no video verdict from a half-measured path, and no crash
    assert "Traceback" not in stderr
    report = json.loads(stdout)
    statuses = {name: fields["status"] for name, fields in report["measurements"].items()}
    assert statuses.get("throughput") in ("unreachable", "error", "timeout"), statuses
    assert any(status != "ok" for status in statuses.values())
    assert report["advice"]  # says what happened in words


def test_a_read_only_store_costs_the_check_its_storage_not_its_verdict(tmp_path: Path) -> None:
    """A read-only home (a full or broken disk remounted ro): one warning line, the verdict as usual."""
    home = tmp_path / "home"
    home.mkdir()
    first = subprocess.run([sys.executable, str(REPO / "cli.py"), "store", "stats"], capture_output=True, text=True,
                           env=subprocess_env(NETCHECK_HOME=str(home)), timeout=30)
    assert first.returncode == 0
    subprocess.run(["mount", "--bind", str(home), str(home)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(home)], check=True)
        check = subprocess.run([sys.executable, str(REPO / "cli.py"), "check", "--local", "--quick", "--no-av",
                                "--json"], capture_output=True, text=True, timeout=60,
                               env=subprocess_env(NETCHECK_HOME=str(home)))
        stats = subprocess.run([sys.executable, str(REPO / "cli.py"), "store", "stats"], capture_output=True,
                               text=True, env=subprocess_env(NETCHECK_HOME=str(home)), timeout=30)
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)
    assert check.returncode in (0, 3, 4), check.stderr
    assert json.loads(check.stdout)["recommendation"]
    assert check.stderr.count("\n") == 1 and "result not saved" in check.stderr
    assert stats.returncode == 1 and stats.stderr.count("\n") == 1 and "local store" in stats.stderr


def test_wall_clock_jumps_do_not_bend_the_figures(server) -> None:  # type: ignore[no-untyped-def]
    """A FAKE clock for a fault we cannot make on this shared machine: time.time() jumps an hour
    forward, then two back, while the UDP probe runs. Intervals use monotonic clocks, so RTT,
    jitter and loss stay what the loopback gives."""
    import asyncio
    import itertools
    from unittest import mock

    from netcheck.probes.udp import UdpProbe, UdpProbeSettings

    real_time = time.time
    jumps = itertools.cycle([0.0, 3600.0, -3600.0])

    def jumping_time() -> float:
        return real_time() + next(jumps)

    from netcheck.net.server_info import find_reflector

    key = asyncio.run(find_reflector(server.http_url, None)).client_key  # before the clock starts jumping
    with mock.patch("time.time", jumping_time):
        result = asyncio.run(UdpProbe(server.udp_host, server.udp_port,
                                      UdpProbeSettings(duration_s=1.0, client_key=key)).run())
    assert result.status.value == "ok" and result.loss_pct == 0.0
    assert result.rtt_max_ms is not None and 0 <= result.rtt_min_ms <= result.rtt_max_ms < 100
