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
from pathlib import Path

from netcheck.errors import UsageError
from netcheck.model import Status
from netcheck.probes.speedtest_child import RUNNER_PROTOCOL
from netcheck.results import ThroughputResult

BACKEND = "speedtest"
OUTPUT_LIMIT_BYTES = 64 * 1024
"""The runner prints a few hundred bytes; more than this is a broken runner, not a result."""
STDERR_TAIL_BYTES = 2048
SOCKET_TIMEOUT_S = 10.0
"""speedtest-cli's own per-connection timeout (its default); the overall deadline is `timeout_s`."""
REASON_MAX_CHARS = 300
MAX_THREADS = 16
REAP_TIMEOUT_S = 2.0

CHILD_MODULE = "netcheck.probes.speedtest_child"
"""Runs speedtest-cli in the child (`python -m`); see that module."""
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)
"""Put on the child's PYTHONPATH, so that `-m` finds netcheck even in an interpreter whose
site-packages are off (`python -S`) or that is not this installation's."""

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
        return [*self.python, "-m", CHILD_MODULE, json.dumps(params)]

    async def run(self) -> ThroughputResult:
        loop = asyncio.get_running_loop()
        try:
            transport, runner = await loop.subprocess_exec(
                lambda: _RunnerProtocol(loop), *self.command(), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_environment(), **_own_process_group())
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


def _child_environment() -> dict[str, str]:
    paths = [PACKAGE_ROOT, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


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
