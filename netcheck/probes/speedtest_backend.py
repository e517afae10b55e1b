"""Internet throughput through speedtest-cli: the fallback when no netcheck server is configured.

speedtest-cli is unmaintained (last release 2021) and speedtest.net often refuses it (HTTP 403),
so it runs in a child process of its own, in its own process group, under a hard deadline: a
hung or broken speedtest-cli costs at most `timeout_s` and never the caller's event loop,
threads or memory. The child prints a cumulative JSON snapshot as it enters each stage, so a run
cut short still reports what it had measured and where it stopped.

speedtest-cli does not measure latency under load: loaded RTT and bufferbloat are always None.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from netcheck.errors import UsageError
from netcheck.model import Status
from netcheck.probes.throughput import ThroughputResult

BACKEND = "speedtest"
OUTPUT_LIMIT_BYTES = 64 * 1024
"""The runner prints a few hundred bytes; more than this is a broken runner, not a result."""
STDERR_TAIL_BYTES = 2048
SOCKET_TIMEOUT_S = 10.0
"""speedtest-cli's own per-connection timeout (its default); the overall deadline is `timeout_s`."""
REASON_MAX_CHARS = 300
MAX_THREADS = 16
REAP_TIMEOUT_S = 2.0
RUNNER_PROTOCOL = 1

# The child process. It imports only the standard library and speedtest-cli, never netcheck, so
# it starts fast and a broken netcheck install cannot be mistaken for a broken speedtest-cli.
RUNNER_SOURCE = r'''
import json, os, socket, ssl, sys, urllib.error

FAILED_PING_MS = 3600 / 6 * 1000  # speedtest-cli scores a failed latency request as 3600 s over 6
STAGE_FAILURE = {
    "import": "cannot import speedtest-cli",
    "config": "cannot retrieve speedtest configuration",
    "servers": "cannot retrieve speedtest server list",
    "latency": "cannot reach any speedtest server",
    "download": "download from speedtest server failed",
    "upload": "upload to speedtest server failed",
}


def main():
    params = json.loads(sys.argv[1])
    state = {"v": __PROTOCOL__, "stage": "import"}

    def emit(**changes):
        state.update(changes)
        sys.stdout.write(json.dumps(state) + "\n")
        sys.stdout.flush()

    # `-c` puts the working directory first on sys.path; a speedtest.py there must not shadow it.
    sys.path[:] = [entry for entry in sys.path if entry not in ("", ".")]
    try:
        import speedtest
    except ImportError as exc:
        emit(outcome="missing",
             reason=f"speedtest-cli is not installed for {sys.executable} ({exc}): pip install speedtest-cli")
        return
    if params["base_url"]:
        redirect(speedtest, params["base_url"])
    try:
        emit(stage="config")
        client = speedtest.Speedtest(timeout=params["socket_timeout_s"], secure=True)
        client.config["length"] = {"download": params["phase_s"], "upload": params["phase_s"]}
        emit(stage="servers")
        client.get_servers()
        emit(stage="latency")
        best = client.get_best_server()
        ping_ms = float(best["latency"])
        if ping_ms >= 3 * FAILED_PING_MS:
            emit(outcome="unreachable", reason="no speedtest server answered the latency test")
            return
        emit(stage="download", server=str(best.get("host", "")),
             ping_ms=ping_ms if ping_ms < FAILED_PING_MS else None)
        client.download(threads=params["threads"])
        emit(stage="upload", download_bps=client.results.download, bytes_down=client.results.bytes_received)
        # Without pre-allocation each in-flight upload builds its own body: memory stays bounded by
        # the thread count instead of the whole upload plan (over 100 MB on fast links).
        client.upload(threads=params["threads"], pre_allocate=False)
        emit(stage="done", upload_bps=client.results.upload, bytes_up=client.results.bytes_sent)
    except Exception as exc:
        kind, reason = classify(speedtest, exc)
        emit(outcome=kind, reason=f"{STAGE_FAILURE.get(state['stage'], state['stage'])}: {reason}")
        return
    # speedtest-cli's transfer threads swallow HTTP errors: a direction that moved nothing failed.
    silent = [name for name, key in (("download", "bytes_down"), ("upload", "bytes_up")) if not state[key]]
    if silent:
        emit(outcome="unreachable",
             reason=f"speedtest server {state['server']} accepted no {' or '.join(silent)} traffic")
    else:
        emit(outcome="ok")


def redirect(speedtest, base_url):
    """Fetch configuration and server list from `base_url` instead of speedtest.net (tests)."""
    original = speedtest.build_request
    prefixes = ("://www.speedtest.net/", "http://c.speedtest.net/")

    def build_request(url, *args, **kwargs):
        for prefix in prefixes:
            if url.startswith(prefix):
                url = base_url.rstrip("/") + "/" + url[len(prefix):]
        return original(url, *args, **kwargs)

    speedtest.build_request = build_request


def causes(exc):
    """speedtest-cli wraps the urllib error as its exception's first argument."""
    chain = []
    while exc is not None and len(chain) < 8:
        chain.append(exc)
        if isinstance(exc, urllib.error.HTTPError):
            break
        if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
            exc = exc.reason
        elif exc.args and isinstance(exc.args[0], BaseException):
            exc = exc.args[0]
        else:
            exc = exc.__cause__
    return chain


def classify(speedtest, exc):
    chain = causes(exc)
    inner = chain[-1]
    if isinstance(inner, TimeoutError):  # socket.timeout is TimeoutError since Python 3.10
        return "timeout", "timed out"
    if isinstance(inner, urllib.error.HTTPError):
        return "unreachable", f"HTTP {inner.code} {inner.reason}"
    if isinstance(inner, socket.gaierror):
        return "unreachable", f"DNS lookup failed ({inner.strerror or inner})"
    if isinstance(inner, ssl.SSLCertVerificationError):
        return "unreachable", f"TLS certificate rejected ({inner.verify_message or inner})"
    if isinstance(inner, OSError):
        return "unreachable", inner.strerror or str(inner) or type(inner).__name__
    network = (speedtest.SpeedtestHTTPError, speedtest.SpeedtestBestServerFailure, speedtest.NoMatchedServers)
    if any(isinstance(link, network) for link in chain):
        return "unreachable", str(inner) or (type(inner).__doc__ or type(inner).__name__).strip()
    return "error", f"{type(inner).__name__}: {inner}"


main()
sys.stdout.flush()
os._exit(0)  # the result is out: do not wait for any thread speedtest-cli may have left blocked
'''.replace("__PROTOCOL__", str(RUNNER_PROTOCOL))

_OUTCOME_STATUS = {
    "ok": Status.OK,
    "timeout": Status.TIMEOUT,
    "unreachable": Status.UNREACHABLE,
    "error": Status.ERROR,
    "missing": Status.ERROR,
}


class SpeedtestProbe:
    """Download and upload against the nearest speedtest.net server, via speedtest-cli."""

    name = "throughput"

    def __init__(self, timeout_s: float = 20.0, *, threads: int = 4, duration_s: float = 8.0,
                 base_url: str | None = None, python: Sequence[str] | None = None) -> None:
        """
        timeout_s: hard limit for the whole run; the child's process group is killed after it.
        threads: concurrent HTTP transfers per direction.
        duration_s: both transfer phases together, as for the netcheck backend.
        base_url: where the configuration and server list come from instead of speedtest.net
            (a fake server in tests).
        python: the interpreter command that runs speedtest-cli; default this interpreter.
        """
        if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
            raise UsageError(f"speedtest timeout_s must be a positive number of seconds, not {timeout_s!r}")
        if not (isinstance(threads, int) and 1 <= threads <= MAX_THREADS):
            raise UsageError(f"speedtest threads must be 1..{MAX_THREADS}, not {threads!r}")
        if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and duration_s > 0):
            raise UsageError(f"speedtest duration_s must be a positive number of seconds, not {duration_s!r}")
        self.timeout_s = float(timeout_s)
        self.threads = threads
        self.duration_s = float(duration_s)
        self.base_url = base_url
        self.python = list(python) if python else [sys.executable]

    def command(self) -> list[str]:
        params = {
            "threads": self.threads,
            "phase_s": self.duration_s / 2,
            "socket_timeout_s": SOCKET_TIMEOUT_S,
            "base_url": self.base_url,
        }
        return [*self.python, "-c", RUNNER_SOURCE, json.dumps(params)]

    async def run(self) -> ThroughputResult:
        loop = asyncio.get_running_loop()
        try:
            transport, runner = await loop.subprocess_exec(
                lambda: _RunnerProtocol(loop), *self.command(), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **_own_process_group())
        except OSError as error:
            return failed_result(Status.ERROR, f"cannot start {self.python[0]}: {error}")
        try:
            await asyncio.wait_for(asyncio.shield(runner.ended), self.timeout_s)
        except asyncio.TimeoutError:
            return result_from_output(bytes(runner.stdout), timed_out_after_s=self.timeout_s)
        finally:
            await _stop(transport, runner)
        if runner.overflowed:
            return failed_result(Status.ERROR, f"speedtest runner printed more than {OUTPUT_LIMIT_BYTES} bytes")
        return result_from_output(bytes(runner.stdout), returncode=transport.get_returncode(),
                                  stderr=bytes(runner.stderr_tail))


def failed_result(status: Status, error: str) -> ThroughputResult:
    return ThroughputResult(status=status, download_mbps=None, upload_mbps=None, idle_rtt_ms=None,
                            loaded_rtt_down_ms=None, loaded_rtt_up_ms=None, bufferbloat_ms=None, bytes_down=None,
                            bytes_up=None, backend=BACKEND, error=one_line(error))


def result_from_output(stdout: bytes, *, returncode: int | None = None, stderr: bytes = b"",
                       timed_out_after_s: float | None = None) -> ThroughputResult:
    """Turn the runner's snapshots (one JSON object a line, the last one wins) into a result.

    A runner that printed its outcome counts as finished even if it then failed to exit in time.
    """
    snapshot = _last_snapshot(stdout)
    if timed_out_after_s is not None and "outcome" not in snapshot:
        where = f" (stopped during {snapshot['stage']})" if isinstance(snapshot.get("stage"), str) else ""
        return _result(Status.TIMEOUT, snapshot,
                       f"speedtest-cli did not finish within {timed_out_after_s:g} s{where}")
    if not snapshot:
        shown = _first_line(stdout) or _last_line(stderr) or "no output"
        return failed_result(Status.ERROR, f"speedtest runner gave no result (exit code {returncode}): {shown}")
    outcome = snapshot.get("outcome")
    if outcome is None:
        return _result(Status.ERROR, snapshot,
                       f"speedtest runner exited (code {returncode}) during {snapshot.get('stage')}: "
                       f"{_last_line(stderr) or 'no message'}")
    status = _OUTCOME_STATUS.get(outcome) if isinstance(outcome, str) else None
    if status is None:
        return failed_result(Status.ERROR, f"speedtest runner reported an unknown outcome {outcome!r}")
    reason = snapshot.get("reason")
    if status is not Status.OK and not (isinstance(reason, str) and reason.strip()):
        reason = f"speedtest-cli failed ({outcome}) without a reason"
    return _result(status, snapshot, reason if status is not Status.OK else None)


def one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= REASON_MAX_CHARS else flat[: REASON_MAX_CHARS - 1] + "…"


def _result(status: Status, snapshot: dict, error: str | None) -> ThroughputResult:
    download_bps = _non_negative(snapshot.get("download_bps"))
    upload_bps = _non_negative(snapshot.get("upload_bps"))
    return ThroughputResult(
        status=status,
        download_mbps=_round(download_bps / 1e6) if download_bps is not None else None,
        upload_mbps=_round(upload_bps / 1e6) if upload_bps is not None else None,
        # speedtest-cli's latency: half the mean time of three fresh HTTP GETs (connect, then
        # request: two round trips), so about one RTT to the chosen server.
        idle_rtt_ms=_round(_non_negative(snapshot.get("ping_ms"))),
        loaded_rtt_down_ms=None,
        loaded_rtt_up_ms=None,
        bufferbloat_ms=None,
        bytes_down=_count(snapshot.get("bytes_down")),
        bytes_up=_count(snapshot.get("bytes_up")),
        backend=BACKEND,
        error=one_line(error) if error is not None else None,
    )


def _last_snapshot(stdout: bytes) -> dict:
    for line in reversed(stdout.decode("utf-8", "replace").splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("v") == RUNNER_PROTOCOL:
            return value
    return {}


def _non_negative(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _count(value: object) -> int | None:
    number = _non_negative(value)
    return int(number) if number is not None and number == int(number) else None


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _first_line(data: bytes) -> str:
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[0] if lines else ""


def _last_line(data: bytes) -> str:
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else ""


class _RunnerProtocol(asyncio.SubprocessProtocol):
    """Collects the child's output without back-pressure, so a chatty child can never block us.

    stdout is kept up to the limit and the rest dropped; of stderr only the tail is kept.
    `ended` resolves when the child has exited and closed its pipes, or has printed too much.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.stdout = bytearray()
        self.stderr_tail = bytearray()
        self.overflowed = False
        self.ended: asyncio.Future[None] = loop.create_future()
        self.exited: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self.stdout += data[: max(0, OUTPUT_LIMIT_BYTES + 1 - len(self.stdout))]
            if len(self.stdout) > OUTPUT_LIMIT_BYTES:
                self.overflowed = True
                _resolve(self.ended)
        else:
            self.stderr_tail += data
            del self.stderr_tail[:-STDERR_TAIL_BYTES]

    def process_exited(self) -> None:
        _resolve(self.exited)

    def connection_lost(self, exc: Exception | None) -> None:
        _resolve(self.ended)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _own_process_group() -> dict:
    if os.name == "posix":
        return {"start_new_session": True}
    return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}


async def _stop(transport: asyncio.SubprocessTransport, runner: _RunnerProtocol) -> None:
    """Kill the child and anything it started, close its pipes, and reap it."""
    if os.name == "posix":
        # Also after a clean exit: anything the child left behind still holds the group's id.
        try:
            os.killpg(transport.get_pid(), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    transport.close()  # closes the pipes even if something outside the group still holds them
    try:
        await asyncio.wait_for(asyncio.shield(runner.exited), REAP_TIMEOUT_S)
    except asyncio.TimeoutError:
        pass  # the child watcher reaps it whenever it does die
