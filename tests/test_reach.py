"""The reachability probe against real components: `netcheck serve`, coturn (STUN and TURN over UDP
and TCP), silent and closed ports on loopback, a TLS listener, and a client whose UDP is dropped."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netcheck.av.peer import IceSettings
from netcheck.errors import UsageError
from netcheck.model import Status, result_fields
from netcheck.probes.reach import RUN_BUDGET_S, ReachProbe, ReachResult, parse_ice_url
from netcheck.results import SUB_STATUSES
from netcheck.server.app import start_server
from tests.harness.servers import REPO, ServerProcess, stop, subprocess_env
from tests.harness.coturn import Coturn, _write_self_signed_cert
from tests.harness.netns import ClientNamespace

LOOPBACK = "127.0.0.1"


def run_probe(*args, **kwargs) -> tuple[ReachResult, float]:
    """(result, seconds taken) of one ReachProbe run."""
    start_s = time.monotonic()
    result = asyncio.run(ReachProbe(*args, **kwargs).run())
    return result, time.monotonic() - start_s


def turn_settings(turn: Coturn, password: str | None = None, transport: str = "udp") -> IceSettings:
    return IceSettings(turn_url=turn.url(transport), turn_user=turn.user, turn_password=password or turn.password)


@pytest.fixture(scope="module")
def coturn() -> Iterator[Coturn]:
    with Coturn() as turn:
        yield turn


@pytest.fixture
def silent_udp() -> Iterator[tuple[str, int]]:
    """A bound UDP socket that never answers: datagrams to it vanish, no ICMP comes back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        yield sock.getsockname()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound for TCP but not listening (connects are refused) and not bound for UDP (datagrams
    get ICMP port unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind((LOOPBACK, 0))
        yield tcp.getsockname()[1]


@pytest.fixture
def unanswered_tcp() -> Iterator[int]:
    """A listening TCP port whose accept queue is full: further SYNs are dropped, connects time out."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=1.0)
    try:
        yield listener.getsockname()[1]
    finally:
        filler.close()
        listener.close()


# --- everything reachable ----------------------------------------------------------------------

def test_every_path_to_serve_and_coturn_is_ok(server: ServerProcess, coturn: Coturn) -> None:
    result, took_s = run_probe(server.http_url, None, f"stun:{coturn.host}:{coturn.port}", turn_settings(coturn))
    fields = result_fields(result)
    assert result.status == Status.OK, fields
    assert (result.dns_status, result.dns_ms) == ("ok", 0.0), fields  # an IP literal: no lookup
    assert result.tcp_status == "ok" and 0 < result.tcp_connect_ms < 500, fields
    assert (result.tls_status, result.tls_handshake_ms) == ("skipped", None), fields  # http:
    assert result.udp_status == "ok" and 0 < result.udp_rtt_ms < 100, fields  # port from GET /v1/info
    assert (result.udp_packets_sent, result.udp_packets_received) == (5, 5), fields
    assert result.stun_status == "ok" and 0 < result.stun_rtt_ms < 500, fields
    assert result.turn_udp_status == "ok" and 0 < result.turn_udp_ms < 1000, fields
    assert result.turn_tcp_status == "ok" and 0 < result.turn_tcp_ms < 1000, fields
    assert result.error is None, fields
    assert took_s < 2.0, fields
    json.dumps(fields)  # the --json form
    assert all(value in SUB_STATUSES for key, value in fields.items() if key.endswith("_status")), fields


def test_turn_transport_in_the_url_does_not_matter(server: ServerProcess, coturn: Coturn) -> None:
    result, _ = run_probe(server.http_url, (server.udp_host, server.udp_port), None,
                          turn_settings(coturn, transport="tcp"))
    assert (result.turn_udp_status, result.turn_tcp_status) == ("ok", "ok"), result_fields(result)
    assert result.stun_status == "skipped"


@pytest.mark.slow
def test_turn_allocations_are_deleted(server: ServerProcess, coturn: Coturn, closed_port: int) -> None:
    """coturn has 16 relay ports; 20 allocations over UDP only succeed if each run frees its own."""
    settings = turn_settings(coturn)

    async def many_runs() -> list[ReachResult]:
        # a refused reflector port ends the UDP part at once, so the runs are quick
        probe = ReachProbe(server.http_url, (LOOPBACK, closed_port), None, settings)
        return [await probe.run() for _ in range(20)]  # 20 over UDP (20 over TCP, freed with the connection)

    results = asyncio.run(many_runs())
    failed = [(run, r.turn_udp_status, r.turn_tcp_status, r.error) for run, r in enumerate(results)
              if not r.turn_udp_status == r.turn_tcp_status == "ok"]
    # on failure, coturn's own account of its allocations says whether one was not freed
    log = [line for line in coturn.log_text().splitlines() if "alloc" in line.lower() or "error" in line.lower()]
    assert not failed, (failed, log[-20:])


def test_a_stale_allocation_on_the_client_port_is_left_for_another_port(server: ServerProcess, coturn: Coturn,
                                                                         closed_port: int) -> None:
    """RFC 8656 §7.2: coturn answers 437 (Allocation Mismatch) when it still holds an allocation on the
    client's address — a crashed client's behind a NAT that reused its port, or (what once made this
    suite fail) an earlier socket's port that the OS handed out again. The check tries another address.

    FAULTS made here: a client that allocates and vanishes without deleting (real coturn keeps it),
    and the probe's first TURN socket bound to that client's port (the OS's choice, forced).
    """
    from aioice import turn

    settings = turn_settings(coturn)
    turn_address = (coturn.host, coturn.port)

    async def scenario() -> tuple[ReachResult, list[int]]:
        loop = asyncio.get_running_loop()
        crashed, crashed_client = await loop.create_datagram_endpoint(
            lambda: turn.TurnClientUdpProtocol(turn_address, coturn.user, coturn.password, 60, 60),
            remote_addr=turn_address)
        await crashed_client.connect()
        stale_port = crashed.get_extra_info("sockname")[1]
        crashed_client.refresh_task.cancel()
        crashed.close()  # no Refresh with lifetime 0: coturn keeps the allocation for 60 s
        await asyncio.sleep(0)
        turn_ports: list[int] = []
        original = loop.create_datagram_endpoint

        async def first_turn_socket_on_the_stale_port(factory, **kwargs):  # type: ignore[no-untyped-def]
            if kwargs.get("remote_addr") == turn_address and not turn_ports:
                kwargs["local_addr"] = (LOOPBACK, stale_port)
            transport, protocol = await original(factory, **kwargs)
            if kwargs.get("remote_addr") == turn_address:
                turn_ports.append(transport.get_extra_info("sockname")[1])
            return transport, protocol

        loop.create_datagram_endpoint = first_turn_socket_on_the_stale_port  # type: ignore[method-assign]
        try:
            result = await ReachProbe(server.http_url, (LOOPBACK, closed_port), None, settings).run()
        finally:
            del loop.create_datagram_endpoint
        return result, [stale_port, *turn_ports]

    result, (stale_port, *turn_ports) = asyncio.run(scenario())
    assert turn_ports[0] == stale_port and len(turn_ports) == 2, turn_ports  # refused there, then another port
    assert result.turn_udp_status == "ok", result_fields(result)


def test_nothing_configured_is_skipped(server: ServerProcess) -> None:
    result, _ = run_probe(server.http_url, None, None, None)
    assert result.status == Status.OK
    assert (result.stun_status, result.turn_udp_status, result.turn_tcp_status) == ("skipped",) * 3
    assert result.stun_rtt_ms is result.turn_udp_ms is result.turn_tcp_ms is None


def test_a_host_name_is_resolved(server: ServerProcess) -> None:
    url = server.http_url.replace(LOOPBACK, "localhost")
    result, _ = run_probe(url, (server.udp_host, server.udp_port), None, None)
    assert result.dns_status == "ok" and result.dns_ms is not None and result.dns_ms >= 0, result_fields(result)
    assert result.tcp_status == "ok" and result.status == Status.OK


def test_turns_is_tried_over_tls_only(server: ServerProcess, monkeypatch) -> None:
    with Coturn(tls=True) as turn:
        monkeypatch.setenv("SSL_CERT_FILE", str(turn.cert_path))  # trust coturn's self-signed certificate
        settings = IceSettings(turn_url=turn.tls_url(), turn_user=turn.user, turn_password=turn.password)
        result, _ = run_probe(server.http_url, (server.udp_host, server.udp_port), None, settings)
    assert result.turn_udp_status == "skipped", result_fields(result)
    assert result.turn_tcp_status == "ok" and result.turn_tcp_ms > 0, result_fields(result)


# --- TURN credentials --------------------------------------------------------------------------

def test_wrong_turn_password_is_auth_failed_not_a_timeout(server: ServerProcess, coturn: Coturn) -> None:
    result, took_s = run_probe(server.http_url, (server.udp_host, server.udp_port), None,
                               turn_settings(coturn, password="not-the-password"))
    fields = result_fields(result)
    assert (result.turn_udp_status, result.turn_tcp_status) == ("auth_failed", "auth_failed"), fields
    assert result.turn_udp_ms is None and result.turn_tcp_ms is None
    assert "401" in result.error and "not-the-password" not in result.error, fields
    assert result.status == Status.OK, fields  # the server itself is fine
    assert took_s < 1.5, fields


# --- UDP -------------------------------------------------------------------------------------

def test_a_silent_reflector_means_udp_blocked(server: ServerProcess, silent_udp: tuple[str, int]) -> None:
    result, took_s = run_probe(server.http_url, silent_udp, None, None)
    fields = result_fields(result)
    assert result.udp_status == "blocked" and result.udp_rtt_ms is None, fields
    assert (result.udp_packets_sent, result.udp_packets_received) == (5, 0), fields
    assert result.status == Status.OK and result.tcp_status == "ok", fields
    assert took_s < 2.0, fields


def test_a_closed_udp_port_is_unreachable(server: ServerProcess, closed_port: int) -> None:
    result, took_s = run_probe(server.http_url, (LOOPBACK, closed_port), f"stun:{LOOPBACK}:{closed_port}", None)
    fields = result_fields(result)
    assert result.udp_status == "unreachable" and result.stun_status == "unreachable", fields
    assert took_s < 1.0, fields


def test_the_shared_key_or_the_servers_per_client_key_is_used_and_one_is_required() -> None:
    key = b"k" * 32

    async def three() -> tuple[ReachResult, ReachResult, ReachResult]:
        keyed = await start_server(LOOPBACK, 0, 0, hmac_key=key, open_reflector=False)
        try:
            with_key = await ReachProbe(keyed.url, None, None, None, hmac_key=key).run()
            with_client_key = await ReachProbe(keyed.url, None, None, None).run()  # /v1/info hands one out
            untagged = await ReachProbe(keyed.url, (LOOPBACK, keyed.udp_port), None, None).run()
        finally:
            await keyed.close()
        return with_key, with_client_key, untagged

    with_key, with_client_key, untagged = asyncio.run(three())
    assert with_key.udp_status == "ok" and with_key.udp_packets_received == 5, result_fields(with_key)
    assert with_client_key.udp_status == "ok" and with_client_key.udp_packets_received == 5, \
        result_fields(with_client_key)
    assert untagged.udp_status == "blocked" and untagged.udp_packets_received == 0, result_fields(untagged)


# --- the server unreachable ----------------------------------------------------------------

def test_a_refused_server_port_is_unreachable_fast(closed_port: int) -> None:
    result, took_s = run_probe(f"http://{LOOPBACK}:{closed_port}", None, None, None)
    fields = result_fields(result)
    assert result.status == Status.UNREACHABLE, fields
    assert (result.dns_status, result.tcp_status, result.tls_status) == ("ok", "unreachable", "skipped"), fields
    assert result.udp_status == "unreachable" and "/v1/info" in result.error, fields  # no port to probe
    assert took_s < 0.5, fields


@pytest.mark.slow
@pytest.mark.measures  # the check's wall time against its budget
def test_everything_unanswered_ends_within_the_budget(unanswered_tcp: int, silent_udp: tuple[str, int]) -> None:
    host, udp_port = silent_udp
    turn = IceSettings(turn_url=f"turn:{host}:{udp_port}", turn_user="u", turn_password="p")
    turn_tcp = IceSettings(turn_url=f"turn:{host}:{unanswered_tcp}", turn_user="u", turn_password="p")

    async def run() -> tuple[ReachResult, ReachResult]:
        # TURN over UDP to the silent socket; TURN over TCP to the port that never accepts
        return await asyncio.gather(
            ReachProbe(f"https://{LOOPBACK}:{unanswered_tcp}", None, f"stun:{host}:{udp_port}", turn).run(),
            ReachProbe(f"http://{LOOPBACK}:{unanswered_tcp}", silent_udp, None, turn_tcp).run())

    start_s = time.monotonic()
    first, second = asyncio.run(run())
    took_s = time.monotonic() - start_s
    fields = result_fields(first), result_fields(second)
    assert took_s < RUN_BUDGET_S + 0.5, (took_s, fields)
    assert first.status == Status.UNREACHABLE and first.tcp_status == "timeout", fields
    assert first.tls_status == "skipped" and first.udp_status == "unreachable", fields
    assert first.stun_status == "timeout" and first.turn_udp_status == "timeout", fields
    assert second.turn_tcp_status == "timeout" and second.udp_status == "blocked", fields


# --- TLS ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    _write_self_signed_cert(directory / "cert.pem", directory / "key.pem")
    return directory


async def probe_tls_listener(certificate: Path, udp_target: tuple[str, int]) -> ReachResult:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate / "cert.pem", certificate / "key.pem")
    listener = await asyncio.start_server(lambda reader, writer: writer.close(), LOOPBACK, 0, ssl=context)
    port = listener.sockets[0].getsockname()[1]
    try:
        return await ReachProbe(f"https://{LOOPBACK}:{port}", udp_target, None, None).run()
    finally:
        listener.close()


def test_tls_handshake_is_timed(certificate: Path, server: ServerProcess, monkeypatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate / "cert.pem"))  # trust the test's own CA
    result = asyncio.run(probe_tls_listener(certificate, (server.udp_host, server.udp_port)))
    assert result.tls_status == "ok" and 0 < result.tls_handshake_ms < 1000, result_fields(result)


def test_an_untrusted_certificate_is_a_tls_error(certificate: Path, server: ServerProcess) -> None:
    result = asyncio.run(probe_tls_listener(certificate, (server.udp_host, server.udp_port)))
    assert result.tls_status == "error" and "not trusted" in result.error, result_fields(result)
    assert result.status == Status.OK  # the port answered; what to make of the certificate is not the probe's call


# --- configuration -----------------------------------------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("stun:stun.example.org", ("stun", "stun.example.org", 3478)),
    ("stun:192.0.2.1:19302", ("stun", "192.0.2.1", 19302)),
    ("turn:[2001:db8::1]:3479?transport=tcp", ("turn", "2001:db8::1", 3479)),
    ("turns:turn.example.org", ("turns", "turn.example.org", 5349)),
])
def test_ice_urls(url: str, expected: tuple[str, str, int]) -> None:
    assert parse_ice_url(url, ("stun", "turn", "turns")) == expected


@pytest.mark.parametrize("kwargs", [
    {"server_url": "ftp://example.org"},
    {"server_url": "http://example.org:99999"},
    {"stun_url": "stun:"},
    {"stun_url": "turn:example.org:3478"},
    {"stun_url": "stun:example.org:port"},
    {"turn": IceSettings(turn_url="turn:example.org:3478")},  # no credentials
])
def test_bad_configuration_is_a_usage_error(kwargs: dict) -> None:
    arguments = {"server_url": "http://example.org", "udp_target": None, "stun_url": None, "turn": None, **kwargs}
    with pytest.raises(UsageError):
        ReachProbe(**arguments)


def test_importing_the_probe_does_not_import_aioice() -> None:
    code = "import sys, netcheck.probes.reach; print('aioice' in sys.modules, 'aiohttp' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert done.stdout.split() == ["False", "False"], done.stderr


# --- a client whose UDP is dropped -------------------------------------------------------------

IN_NAMESPACE = """
import asyncio, json, sys
from netcheck.model import result_fields
from netcheck.probes.reach import ReachProbe
result = asyncio.run(ReachProbe(sys.argv[1], None, None, None).run())
print(json.dumps(result_fields(result)))
"""


@pytest.mark.slow
@pytest.mark.netns
def test_udp_blocked_client_reaches_the_server_over_tcp_only(tmp_path: Path) -> None:
    with ClientNamespace(block_udp=True) as namespace:
        serve = subprocess.Popen(
            [sys.executable, str(REPO / "cli.py"), "serve", "--bind", namespace.root_address, "--http-port", "0",
             "--udp-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO,
            env=subprocess_env(NETCHECK_HOME=str(tmp_path)))
        try:
            assert serve.stdout is not None
            printed = dict(serve.stdout.readline().split() for _ in range(2))
            done = namespace.run([sys.executable, "-c", IN_NAMESPACE, f"http://{printed['http']}"],
                                 capture_output=True, text=True, timeout=30, cwd=REPO,
                                 env=subprocess_env(NETCHECK_HOME=str(tmp_path)))
        finally:
            stop(serve)
            serve.stdout.close()
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(done.stdout)
        assert result["status"] == "ok" and result["tcp_status"] == "ok", result  # /v1/info over TCP too
        assert result["udp_status"] == "blocked" and result["udp_packets_received"] == 0, result
        assert namespace.dropped_udp_packets() >= 5
