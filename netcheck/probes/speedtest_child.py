"""The speedtest-cli child: run as `python -m netcheck.probes.speedtest_child PARAMS_JSON`.

It imports only the standard library and speedtest-cli (netcheck's package __init__ holds just its
version), so it starts fast and a broken netcheck install cannot be mistaken for a broken
speedtest-cli. It prints a cumulative JSON snapshot as it enters each stage (protocol
`RUNNER_PROTOCOL`), so a run cut short still reports what it had measured and where it stopped;
speedtest_backend.py reads those lines, bounded, under a hard deadline.
"""
# mypy: ignore-errors  -- speedtest-cli ships no type hints

import json
import os
import socket
import ssl
import sys
import urllib.error

RUNNER_PROTOCOL = 1

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
    state = {"v": RUNNER_PROTOCOL, "stage": "import"}

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


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # the result is out: do not wait for any thread speedtest-cli may have left blocked
