"""Faults a user will meet (issue 8): the server dies in the middle of a check."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, start_serve, subprocess_env


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
