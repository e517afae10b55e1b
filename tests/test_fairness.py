"""Issue 15, must show 1: an abusive client cannot take the server from everyone else.

The server runs on the root side of a veth; an abuser on the root side holds 40 throughput streams
and keeps asking for A/V sessions; a client in the namespace (another address) runs a full
`netcheck check`. The client still gets the right verdict; the abuser is refused with 429s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.harness.netns import ClientNamespace
from tests.harness.servers import REPO, subprocess_env
from tests.harness.throughput_runs import server_on_root_side

pytestmark = [pytest.mark.slow, pytest.mark.netns]

ABUSE_S = 25.0


def check_in(namespace: ClientNamespace, home, url: str) -> tuple[int, dict, str]:
    """A full `netcheck check --json` from the namespace, its media on the namespace's own address."""
    done = namespace.run([sys.executable, str(REPO / "cli.py"), "check", "--server", url, "--json"],
                         capture_output=True, text=True, timeout=120,
                         env=subprocess_env(NETCHECK_HOME=str(home), NETCHECK_ICE_HOST_ADDRESSES=namespace.address))
    return done.returncode, json.loads(done.stdout or "{}"), done.stderr


def start_abuser(url: str, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.harness.abuser", url, str(seconds), "40"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())


def test_a_client_completes_its_check_while_another_address_abuses_the_server(tmp_path) -> None:
    with ClientNamespace() as namespace, server_on_root_side(namespace, tmp_path / "server") as url:
        abuser = start_abuser(url, ABUSE_S)
        time.sleep(3.0)  # the abuser holds its streams and its call
        started_s = time.monotonic()
        code, report, stderr = check_in(namespace, tmp_path / "client", url)
        took_s = time.monotonic() - started_s
        abuser.terminate()  # the check is done: the abuser stops now (not at ABUSE_S) and prints its counts
        out, err = abuser.communicate(timeout=ABUSE_S + 30)
    assert code == 0, (stderr, report.get("summary"), report.get("advice"))
    assert report["recommendation"] == "video", report["summary"]
    assert report["measurements"]["av"]["status"] == "ok" and report["measurements"]["throughput"]["status"] == "ok"
    assert took_s < ABUSE_S - 3, "the check ran while the abuse went on"
    statuses = json.loads(out)
    assert statuses.get("download 200") == 8 and statuses.get("download 429") == 32, statuses  # 8 a client
    assert statuses.get("av 200") == 2 and statuses.get("av 429", 0) >= 10, statuses  # 2 calls a client


def test_the_abuser_is_refused_beyond_its_share(tmp_path) -> None:
    with ClientNamespace() as namespace, server_on_root_side(namespace, tmp_path / "server") as url:
        done = subprocess.run([sys.executable, "-m", "tests.harness.abuser", url, "6", "40"], cwd=REPO,
                              capture_output=True, text=True, timeout=60, env=subprocess_env())
    statuses = json.loads(done.stdout)
    assert statuses.get("download 200") == 8 and statuses.get("download 429") == 32, statuses
    assert statuses.get("av 200") == 2 and statuses.get("av 429", 0) >= 5, statuses
