"""The speedtest-cli fallback: offline, refused, hung, broken and missing speedtest-cli, and a fake server.

Every server here is a FAKE on loopback: speedtest.net is never contacted. The one test that tries
the real default runs it in a network namespace without a route, so it is offline by construction.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from netcheck.errors import UsageError
from netcheck.model import Status
from netcheck.probes.speedtest_backend import RUNNER_PROTOCOL, SpeedtestProbe, result_from_output
from netcheck.probes.throughput import ThroughputResult
from tests.harness.netns import ClientNamespace
from tests.harness.servers import REPO, subprocess_env

KILL_SLACK_S = 1.5
"""How long after `timeout_s` the probe may take to kill the child group and return."""


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """speedtest-cli honours proxy variables; loopback fakes must be reached directly."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def run(probe: SpeedtestProbe) -> tuple[ThroughputResult, float]:
    started = time.monotonic()
    result = asyncio.run(probe.run())
    return result, time.monotonic() - started


def our_children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def assert_no_metrics(result: ThroughputResult) -> None:
    assert (result.download_mbps, result.upload_mbps, result.idle_rtt_ms) == (None, None, None)
    assert (result.bytes_down, result.bytes_up) == (None, None)


def assert_one_line(error: str | None) -> None:
    assert error and "\n" not in error and len(error) <= 300


# --- FAKE speedtest.net: configuration, server list, latency, download and upload on loopback ---

# ratio 5, as speedtest.net sends: speedtest-cli's smaller upload bodies (64 KiB) come out 7 bytes
# shorter than their Content-Length, and a strict server then waits for bytes that never come.
CONFIG_XML = """<?xml version="1.0" encoding="UTF-8"?>
<settings>
<client ip="127.0.0.1" lat="0.0" lon="0.0" isp="FAKE" />
<server-config threadcount="2" ignoreids="" />
<download testlength="10" threadsperurl="1" />
<upload testlength="10" ratio="5" maxchunkcount="6" threads="2" />
</settings>"""

SERVERS_XML = """<?xml version="1.0" encoding="UTF-8"?>
<settings><servers>
<server url="http://127.0.0.1:{port}/speedtest/upload.php" lat="0.1" lon="0.1" name="FAKE"
 country="Loopback" cc="LO" sponsor="netcheck tests" id="1" host="127.0.0.1:{port}" />
</servers></settings>"""

DOWNLOAD_BYTES = 256 * 1024


class FakeSpeedtestHandler(BaseHTTPRequestHandler):
    mode = "ok"  # ok | forbidden | no-download

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        port = self.server.server_address[1]
        if path == "/speedtest-config.php":
            if self.mode == "forbidden":
                self.reply(403, b"Forbidden")
            else:
                self.reply(200, CONFIG_XML.encode())
        elif path.startswith("/speedtest-servers"):
            self.reply(200, SERVERS_XML.format(port=port).encode())
        elif path == "/speedtest/latency.txt":
            self.reply(200, b"test=test\n")
        elif path.startswith("/speedtest/random") and self.mode != "no-download":
            self.reply(200, b"\0" * DOWNLOAD_BYTES)
        else:
            self.reply(404, b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        received = 0
        while received < length:
            chunk = self.rfile.read(min(65536, length - received))
            if not chunk:
                break
            received += len(chunk)
        self.reply(200, f"size={received}".encode())


class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # speedtest-cli hangs up on uploads when its time is up; that is not a test failure


@pytest.fixture
def fake_speedtest(request: pytest.FixtureRequest) -> Iterator[str]:
    """A FAKE speedtest.net on loopback; parametrize indirectly with its mode."""
    handler = type("Handler", (FakeSpeedtestHandler,), {"mode": getattr(request, "param", "ok")})
    server = QuietHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class SilentListener:
    """A FAKE server that accepts TCP connections and never answers."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections.append(connection)

    def peers_closed(self) -> bool:
        """True when every client hung up (a killed process's sockets are closed by the kernel)."""
        for connection in self.connections:
            connection.settimeout(2.0)
            try:
                while connection.recv(65536):
                    pass
            except OSError:
                return False
        return bool(self.connections)

    def close(self) -> None:
        self.socket.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def silent_listener() -> Iterator[SilentListener]:
    listener = SilentListener()
    try:
        yield listener
    finally:
        listener.close()


def fake_python(tmp_path: Path, source: str) -> list[str]:
    """A FAKE interpreter command: runs `source` and ignores the runner it is handed."""
    script = tmp_path / "fake_speedtest_runner.py"
    script.write_text(source)
    return [sys.executable, str(script)]


# --- the real runner against the real (absent) internet and against fakes ---

OFFLINE_PROBE = """
import asyncio, dataclasses, json, time
from netcheck.probes.speedtest_backend import SpeedtestProbe
started = time.monotonic()
result = asyncio.run(SpeedtestProbe(timeout_s=10.0).run())
print(json.dumps({**dataclasses.asdict(result), "elapsed_s": time.monotonic() - started}, default=str))
"""


@pytest.mark.netns
def test_offline_the_default_probe_is_unreachable_with_a_reason(tmp_path: Path) -> None:
    """The real default (www.speedtest.net) from a namespace with no route out: offline by construction,
    whether or not this machine has internet."""
    with ClientNamespace() as offline:
        done = offline.run([sys.executable, "-c", OFFLINE_PROBE], capture_output=True, text=True, timeout=60,
                           cwd=REPO, env=subprocess_env(NETCHECK_HOME=str(tmp_path)))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == Status.UNREACHABLE.value
    assert result["backend"] == "speedtest"
    assert_one_line(result["error"])
    assert "speedtest configuration" in result["error"]
    assert all(result[key] is None for key in ("download_mbps", "upload_mbps", "idle_rtt_ms", "bytes_down", "bytes_up"))
    assert result["elapsed_s"] < 10.0


def test_refused_connection_is_unreachable() -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    result, _ = run(SpeedtestProbe(timeout_s=10.0, base_url=f"http://127.0.0.1:{port}"))
    assert result.status == Status.UNREACHABLE
    assert result.error == "cannot retrieve speedtest configuration: Connection refused"


@pytest.mark.parametrize("fake_speedtest", ["forbidden"], indirect=True)
def test_http_403_is_unreachable_and_says_so(fake_speedtest: str) -> None:
    result, _ = run(SpeedtestProbe(timeout_s=10.0, base_url=fake_speedtest))
    assert result.status == Status.UNREACHABLE
    assert result.error == "cannot retrieve speedtest configuration: HTTP 403 Forbidden"
    assert_no_metrics(result)


def test_against_a_fake_speedtest_server_every_figure_is_filled(fake_speedtest: str) -> None:
    result, elapsed_s = run(SpeedtestProbe(timeout_s=15.0, duration_s=1.0, base_url=fake_speedtest))
    assert result.status == Status.OK, result.error
    assert result.error is None
    assert result.download_mbps and result.download_mbps > 0
    assert result.upload_mbps and result.upload_mbps > 0
    assert result.bytes_down and result.bytes_down >= DOWNLOAD_BYTES
    assert result.bytes_up and result.bytes_up > 0
    assert result.idle_rtt_ms is not None and 0 <= result.idle_rtt_ms < 100
    assert (result.loaded_rtt_down_ms, result.loaded_rtt_up_ms, result.bufferbloat_ms) == (None, None, None)
    assert result.backend == "speedtest"
    assert elapsed_s < 15.0


@pytest.mark.parametrize("fake_speedtest", ["no-download"], indirect=True)
def test_a_direction_that_moves_no_bytes_is_unreachable_but_keeps_the_rest(fake_speedtest: str) -> None:
    result, _ = run(SpeedtestProbe(timeout_s=15.0, duration_s=1.0, base_url=fake_speedtest))
    assert result.status == Status.UNREACHABLE
    assert result.error == f"speedtest server {fake_speedtest.removeprefix('http://')} accepted no download traffic"
    assert result.bytes_down == 0 and result.upload_mbps and result.upload_mbps > 0
    assert result.idle_rtt_ms is not None


def test_a_hanging_server_times_out_and_the_runner_is_killed(silent_listener: SilentListener) -> None:
    before = our_children()
    result, elapsed_s = run(SpeedtestProbe(timeout_s=2.0, base_url=silent_listener.url))
    assert result.status == Status.TIMEOUT
    assert result.error == "speedtest-cli did not finish within 2 s (stopped during config)"
    assert 2.0 <= elapsed_s < 2.0 + KILL_SLACK_S
    assert silent_listener.peers_closed()
    assert our_children() <= before


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    source = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    result, elapsed_s = run(SpeedtestProbe(timeout_s=1.5, python=fake_python(tmp_path, source)))
    assert result.status == Status.TIMEOUT
    assert elapsed_s < 1.5 + KILL_SLACK_S
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            if psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"grandchild {grandchild} survived the timeout")


def test_a_runner_that_reported_its_outcome_but_hangs_on_exit_counts_as_finished(tmp_path: Path) -> None:
    line = json.dumps({"v": RUNNER_PROTOCOL, "stage": "done", "outcome": "ok", "ping_ms": 9.0,
                       "download_bps": 2e6, "bytes_down": 1000, "upload_bps": 1e6, "bytes_up": 500})
    source = f"import time\nprint({line!r}, flush=True)\ntime.sleep(60)\n"
    result, elapsed_s = run(SpeedtestProbe(timeout_s=1.0, python=fake_python(tmp_path, source)))
    assert result.status == Status.OK
    assert (result.download_mbps, result.upload_mbps, result.idle_rtt_ms) == (2.0, 1.0, 9.0)
    assert elapsed_s < 1.0 + KILL_SLACK_S


def test_a_runner_that_prints_garbage_is_an_error(tmp_path: Path) -> None:
    source = "print('Retrieving speedtest.net configuration... {not json')\n"
    result, _ = run(SpeedtestProbe(timeout_s=5.0, python=fake_python(tmp_path, source)))
    assert result.status == Status.ERROR
    assert result.error == ("speedtest runner gave no result (exit code 0): "
                            "Retrieving speedtest.net configuration... {not json")
    assert_no_metrics(result)


def test_a_runner_that_floods_stdout_is_an_error(tmp_path: Path) -> None:
    source = "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n"
    result, elapsed_s = run(SpeedtestProbe(timeout_s=5.0, python=fake_python(tmp_path, source)))
    assert result.status == Status.ERROR
    assert result.error == "speedtest runner printed more than 65536 bytes"
    assert elapsed_s < 5.0


def test_missing_speedtest_cli_is_an_error_that_says_how_to_install_it() -> None:
    # -S: no site-packages, so this interpreter cannot import speedtest-cli.
    result, _ = run(SpeedtestProbe(timeout_s=5.0, python=[sys.executable, "-S"]))
    assert result.status == Status.ERROR
    assert_one_line(result.error)
    assert result.error.startswith("speedtest-cli is not installed for ")
    assert result.error.endswith("pip install speedtest-cli")


def test_a_missing_interpreter_is_an_error(tmp_path: Path) -> None:
    result, _ = run(SpeedtestProbe(python=[str(tmp_path / "no-such-python")]))
    assert result.status == Status.ERROR
    assert result.error.startswith("cannot start ")


# --- the parent's reading of the runner's snapshots, without processes ---

def snapshot(**fields: object) -> bytes:
    return (json.dumps({"v": RUNNER_PROTOCOL, **fields}) + "\n").encode()


def test_snapshots_convert_to_units_and_the_last_one_wins() -> None:
    output = (snapshot(stage="download", ping_ms=12.3456, server="s:8080")
              + snapshot(stage="done", ping_ms=12.3456, download_bps=48_500_000.0, bytes_down=30_000_000,
                         upload_bps=9_750_000, bytes_up=6_000_000, outcome="ok"))
    result = result_from_output(output, returncode=0)
    assert result == ThroughputResult(Status.OK, 48.5, 9.75, 12.35, None, None, None, 30_000_000, 6_000_000,
                                      "speedtest", None)


def test_a_timeout_keeps_what_was_measured_before_it() -> None:
    output = snapshot(stage="upload", ping_ms=20.0, download_bps=10e6, bytes_down=5_000_000)
    result = result_from_output(output, timed_out_after_s=20.0)
    assert result.status == Status.TIMEOUT
    assert result.error == "speedtest-cli did not finish within 20 s (stopped during upload)"
    assert (result.download_mbps, result.idle_rtt_ms, result.bytes_down) == (10.0, 20.0, 5_000_000)
    assert result.upload_mbps is None


@pytest.mark.parametrize("value", [-1.0, float("nan"), "12", True, None])
def test_implausible_figures_are_dropped(value: object) -> None:
    line = json.dumps({"v": RUNNER_PROTOCOL, "stage": "done", "outcome": "ok", "ping_ms": value,
                       "download_bps": value, "bytes_up": value}, allow_nan=True)
    result = result_from_output(line.encode(), returncode=0)
    assert (result.idle_rtt_ms, result.download_mbps, result.bytes_up) == (None, None, None)


def test_a_runner_that_dies_mid_way_is_an_error_with_its_last_words() -> None:
    result = result_from_output(snapshot(stage="download"), returncode=-9, stderr=b"Traceback...\nMemoryError\n")
    assert result.status == Status.ERROR
    assert result.error == "speedtest runner exited (code -9) during download: MemoryError"


def test_an_unknown_outcome_is_an_error() -> None:
    result = result_from_output(snapshot(stage="done", outcome="blocked-ish"), returncode=0)
    assert result.status == Status.ERROR
    assert result.error == "speedtest runner reported an unknown outcome 'blocked-ish'"


@pytest.mark.parametrize("arguments", [{"timeout_s": 0}, {"timeout_s": float("inf")}, {"threads": 0},
                                       {"threads": 64}, {"duration_s": -1.0}])
def test_bad_settings_are_usage_errors(arguments: dict) -> None:
    with pytest.raises(UsageError):
        SpeedtestProbe(**arguments)
