"""The TSDB fixtures work against the real servers (InfluxDB 1.6.7, VictoriaMetrics 1.79.5), and the
fault proxy injects faults and otherwise forwards untouched; nothing is left running afterwards.

Writes use plain urllib, as a client would, so these tests also pin down the status codes and
bodies the servers really return (see the docstring of tests/tsdb.py)."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from tests.harness.http_faults import HttpFaultProxy
from tests.harness.ports import free_port
from tests.harness.tsdb import InfluxDB1, TsdbError, VictoriaMetrics


@pytest.fixture(scope="module")
def influx() -> Iterator[InfluxDB1]:
    with InfluxDB1() as server:
        yield server


@pytest.fixture(scope="module")
def vm() -> Iterator[VictoriaMetrics]:
    with VictoriaMetrics() as server:
        yield server


def unique(prefix: str) -> str:
    """A measurement name no other test uses, so tests can share one server."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def post(url: str, body: bytes, gzipped: bool = False,
         headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    """POST like a client would; (status, body, headers) for errors too."""
    all_headers = {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}
    if gzipped:
        body = gzip.compress(body)
        all_headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(url, data=body, headers=all_headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def influx_write_url(server: InfluxDB1, password: str | None = None, database: str | None = None,
                     base: str | None = None) -> str:
    query = urllib.parse.urlencode({"db": database or server.database, "precision": "ms", "u": server.username,
                                    "p": server.password if password is None else password})
    return f"{base or server.url}/write?{query}"


def vm_write_url(base: str) -> str:
    return f"{base}/api/v2/write?org=o&bucket=b&precision=ms"


# --- InfluxDB 1.6.7 --------------------------------------------------------------------------


def test_influx_gzip_write_is_read_back(influx: InfluxDB1):
    m = unique("netcheck_probe")
    lines = f"{m},host=a rtt_ms=12.5,loss=0i 1700000000000\n{m},host=b rtt_ms=30,loss=2i 1700000000001\n"

    status, body, _ = post(influx_write_url(influx), lines.encode(), gzipped=True)

    assert (status, body) == (204, b"")
    assert influx.count(m) == 2
    [series] = influx.query(f'SELECT "host", "rtt_ms", "loss" FROM "{m}"')
    assert series["columns"] == ["time", "host", "rtt_ms", "loss"]
    assert series["values"] == [[1700000000000, "a", 12.5, 0], [1700000000001, "b", 30, 2]]


@pytest.mark.parametrize("password, expected_error", [
    ("wrong", "authorization failed"),
    ("", "unable to parse authentication credentials"),  # what `p=` with an empty password gives
])
def test_influx_bad_credentials_are_401(influx: InfluxDB1, password: str, expected_error: str):
    m = unique("netcheck_probe")
    status, body, headers = post(influx_write_url(influx, password=password), f"{m} v=1 1700000000000\n".encode())

    assert status == 401
    assert json.loads(body) == {"error": expected_error}
    assert headers.get("Www-Authenticate") == 'Basic realm="InfluxDB"'
    assert influx.count(m) == 0


def test_influx_without_credentials_is_401(influx: InfluxDB1):
    status, body, _ = post(f"{influx.url}/write?db={influx.database}", b"netcheck_x v=1\n")
    assert (status, json.loads(body)) == (401, {"error": "unable to parse authentication credentials"})


def test_influx_unknown_database_is_404(influx: InfluxDB1):
    status, body, headers = post(influx_write_url(influx, database="nope"), b"netcheck_x v=1 1700000000000\n")

    assert status == 404
    assert json.loads(body) == {"error": 'database not found: "nope"'}
    assert headers.get("X-Influxdb-Error") == 'database not found: "nope"'


def test_influx_malformed_line_is_400_and_good_lines_of_the_batch_are_kept(influx: InfluxDB1):
    m = unique("netcheck_probe")
    status, body, _ = post(influx_write_url(influx), f"{m} v= 1700000000000\n".encode())
    assert status == 400
    assert json.loads(body) == {"error": f"unable to parse '{m} v= 1700000000000': missing field value"}

    status, body, _ = post(influx_write_url(influx), f"{m} v=1 1700000000000\n{m} v= 1700000000001\n".encode())
    assert status == 400
    assert json.loads(body)["error"].startswith("partial write: unable to parse")
    assert influx.count(m) == 1  # a 400 does not mean "nothing stored"


def test_influx_query_errors_raise(influx: InfluxDB1):
    with pytest.raises(TsdbError, match="error parsing query"):
        influx.query("SELECT * FROM")
    with pytest.raises(TsdbError, match="GROUP BY requires at least one aggregate"):
        influx.query("SELECT * FROM netcheck_x GROUP BY time(1m)")  # a statement-level error
    assert influx.query('SELECT * FROM "netcheck_never_written"') == []


def test_influx_stop_start_keeps_data_and_port(influx: InfluxDB1):
    m = unique("netcheck_probe")
    assert post(influx_write_url(influx), f"{m} v=1 1700000000000\n".encode())[0] == 204
    url = influx.url

    influx.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/ping", timeout=2)
    influx.start()

    assert influx.url == url
    assert influx.count(m) == 1
    assert post(influx_write_url(influx), f"{m} v=2 1700000000001\n".encode())[0] == 204
    assert influx.count(m) == 2


def test_influx_without_auth_accepts_anonymous_writes():
    with InfluxDB1(auth=False, database="other") as server:
        status, _, _ = post(f"{server.url}/write?db=other&precision=ms", b"netcheck_x v=1 1700000000000\n")
        assert status == 204
        assert server.count("netcheck_x") == 1


# --- VictoriaMetrics 1.79.5 ------------------------------------------------------------------


def test_vm_v2_write_shows_up_in_export(vm: VictoriaMetrics):
    m = unique("netcheck_probe")
    now = int(time.time() * 1000)

    status, body, _ = post(vm_write_url(vm.url), f"{m},host=a rtt_ms=12.5,loss=0i {now}\n".encode(), gzipped=True)

    assert (status, body) == (204, b"")
    exported = vm.export(f'{{__name__=~"{m}_.*"}}')
    assert sorted((s["metric"]["__name__"], s["values"], s["timestamps"]) for s in exported) == [
        (f"{m}_loss", [0], [now]), (f"{m}_rtt_ms", [12.5], [now])]
    assert all(s["metric"] == {"__name__": s["metric"]["__name__"], "host": "a"} for s in exported)  # no db label
    assert vm.samples(f'{{__name__=~"{m}_.*"}}') == [
        (f"{m}_loss", (("host", "a"),), now, 0.0), (f"{m}_rtt_ms", (("host", "a"),), now, 12.5)]


def test_vm_without_dedup_shows_duplicate_writes(vm: VictoriaMetrics):
    m = unique("netcheck_probe")
    line = f"{m},host=a rtt_ms=12.5 {int(time.time() * 1000)}\n".encode()
    for _ in range(2):
        assert post(vm_write_url(vm.url), line)[0] == 204

    assert len(vm.samples(f"{m}_rtt_ms")) == 2


def test_vm_with_dedup_collapses_duplicate_writes():
    with VictoriaMetrics(extra_args=["-dedup.minScrapeInterval=1ms"]) as server:
        line = f"netcheck_probe,host=a rtt_ms=12.5 {int(time.time() * 1000)}\n".encode()
        for _ in range(2):
            assert post(vm_write_url(server.url), line)[0] == 204

        assert len(server.samples("netcheck_probe_rtt_ms")) == 1


def test_vm_stop_start_keeps_data_and_port(vm: VictoriaMetrics):
    m = unique("netcheck_probe")
    now = int(time.time() * 1000)
    assert post(vm_write_url(vm.url), f"{m} v=1 {now}\n".encode())[0] == 204  # not flushed before stop
    url = vm.url

    vm.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/health", timeout=2)
    vm.start()

    assert vm.url == url
    assert vm.samples(f"{m}_v") == [(f"{m}_v", (), now, 1.0)]


def test_vm_with_http_auth():
    with VictoriaMetrics(extra_args=["-httpAuth.username=writer", "-httpAuth.password=s3cret"]) as server:
        line = f"netcheck_probe v=1 {int(time.time() * 1000)}\n".encode()
        assert post(vm_write_url(server.url), line)[0] == 401
        basic = {"Authorization": "Basic d3JpdGVyOnMzY3JldA=="}  # writer:s3cret
        assert post(vm_write_url(server.url), line, headers=basic)[0] == 204
        assert len(server.samples()) == 1  # export() authenticates itself


def test_startup_failure_raises_with_log_tail_and_cleans_up():
    server = VictoriaMetrics(extra_args=["-no-such-flag"])
    with pytest.raises(TsdbError, match="flag provided but not defined: -no-such-flag"), server:
        pass
    assert server.proc is None and server.directory is None


def test_free_port_is_bindable_on_loopback():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# --- HttpFaultProxy ----------------------------------------------------------------------------


def test_proxy_fails_next_two_then_forwards(influx: InfluxDB1):
    m = unique("netcheck_probe")
    with HttpFaultProxy(influx.url) as proxy:
        proxy.fail_next(2, 503)
        url = influx_write_url(influx, base=proxy.url)
        path = url.removeprefix(proxy.url)

        answers = [post(url, f"{m},host=a v=1 1700000000000\n".encode(), gzipped=True) for _ in range(3)]

        assert [status for status, _, _ in answers] == [503, 503, 204]
        assert json.loads(answers[0][1]) == {"code": "unavailable", "message": "fault injected"}
        assert proxy.requests == [("POST", path, 503), ("POST", path, 503), ("POST", path, 204)]
        assert proxy.forwarded_count == 1
        assert answers[2][2].get("X-Influxdb-Version", "").startswith("1.6")  # the real server's headers
    assert influx.count(m) == 1


def test_proxy_retry_after_fail_always_and_heal(influx: InfluxDB1):
    with HttpFaultProxy(influx.url) as proxy:
        proxy.fail_next(1, 429, body=b'{"error":"slow down"}', headers={"Retry-After": "2"})
        status, body, headers = post(influx_write_url(influx, base=proxy.url), b"netcheck_x v=1\n")
        assert (status, body, headers.get("Retry-After")) == (429, b'{"error":"slow down"}', "2")

        proxy.fail_always(500)
        assert [post(influx_write_url(influx, base=proxy.url), b"netcheck_x v=1\n")[0] for _ in range(3)] == [500] * 3
        proxy.heal()
        assert post(influx_write_url(influx, base=proxy.url), b"netcheck_x v=1\n")[0] == 204
        assert proxy.forwarded_count == 1


def test_proxy_relays_real_errors_and_chunked_bodies(vm: VictoriaMetrics, influx: InfluxDB1):
    m = unique("netcheck_probe")
    with HttpFaultProxy(influx.url) as proxy:
        status, body, _ = post(influx_write_url(influx, password="wrong", base=proxy.url), b"netcheck_x v=1\n")
        assert (status, json.loads(body)) == (401, {"error": "authorization failed"})  # the target's own 401

    with HttpFaultProxy(vm.url) as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        now = int(time.time() * 1000)
        conn.request("POST", "/api/v2/write?org=o&bucket=b&precision=ms",
                     body=iter([f"{m} v=1 {now}\n".encode(), f"{m} v=2 {now + 1}\n".encode()]),
                     headers={"Content-Type": "text/plain"}, encode_chunked=True)
        assert conn.getresponse().status == 204
        conn.close()
        assert [value for *_, value in vm.samples(f"{m}_v")] == [1.0, 2.0]


def test_proxy_answers_502_when_target_is_down():
    with HttpFaultProxy(f"http://127.0.0.1:{free_port()}") as proxy:
        status, body, _ = post(f"{proxy.url}/write?db=x", b"netcheck_x v=1\n")
        assert status == 502 and b"target unreachable" in body
        assert proxy.requests == [("POST", "/write?db=x", 502)]
        assert proxy.forwarded_count == 0
