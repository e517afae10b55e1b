"""Delivered bytes from TCP_INFO against what a real receiver read; the server's download count,
and the client reading it."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from netcheck.net.tcp_info import delivered_bytes, delivery_reading, tcp_info_available
from netcheck.server import throughput
from tests.harness.servers import ServerProcess, local_app

pytestmark = pytest.mark.skipif(not tcp_info_available(), reason="TCP_INFO is read on Linux only")


def connected_pair() -> tuple[socket.socket, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    sender = socket.create_connection(listener.getsockname())
    receiver, _ = listener.accept()
    listener.close()
    return sender, receiver


def wait_for(condition, timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)


def test_the_sender_counts_exactly_what_the_receiver_read() -> None:
    sender, receiver = connected_pair()
    with sender, receiver:
        before = delivered_bytes(sender)
        assert before is not None
        sender.sendall(b"x" * 300_000)
        received = 0
        while received < 300_000:
            received += len(receiver.recv(65536))
        wait_for(lambda: delivered_bytes(sender) - before >= received)
        assert delivered_bytes(sender) - before == 300_000


def send_unread(sender: socket.socket, size: int) -> int:
    """Send `size` bytes the receiver does not read, wait until they are acknowledged; the count before."""
    before = delivered_bytes(sender)
    assert before is not None
    sender.sendall(b"x" * size)
    wait_for(lambda: delivered_bytes(sender) - before >= size)
    return before


def test_bytes_not_yet_read_by_the_receiving_application_still_count_as_delivered() -> None:
    """Delivery is the kernel's acknowledgement, not the application's read: what a hole would hide."""
    sender, receiver = connected_pair()
    with sender, receiver:
        before = send_unread(sender, 50_000)
        assert delivered_bytes(sender) - before == 50_000


def test_sockets_that_cannot_tell_give_none() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert delivered_bytes(udp) is None
    udp.close()
    sender, receiver = connected_pair()
    receiver.close()
    sender.close()
    assert delivered_bytes(sender) is None


def test_a_reading_tells_how_long_ago_the_last_acknowledgement_arrived() -> None:
    sender, receiver = connected_pair()
    with sender, receiver:
        before = send_unread(sender, 50_000)
        acked_s = time.monotonic()
        time.sleep(0.3)
        reading = delivery_reading(sender)
        read_s = time.monotonic()
    assert reading is not None and reading[0] - before == 50_000
    # the kernel's clock ticks in jiffies (1–10 ms): the age is that close to what was observed
    assert read_s - acked_s - 0.02 <= reading[1] <= read_s - acked_s + 0.02


def test_a_download_count_is_stamped_at_its_last_acknowledgement_not_when_it_was_read(monkeypatch) -> None:
    """A test's window ends at its last sample: a sample stamped when it was read, a period after the
    transfer stopped, would stretch the window without bytes (8/2 Mbit/s read 3.4 % low in CI)."""
    monkeypatch.setattr(throughput, "SAMPLE_EVERY_S", 0.3)

    async def one_burst_then_a_late_read() -> tuple[list[tuple[float, int]], float]:
        record = throughput.DownloadRecord()
        sender, receiver = connected_pair()
        with sender, receiver:
            key = record.join(sender)  # the first sample now, the next 0.3 s later
            before = delivered_bytes(sender)
            sender.sendall(b"x" * 50_000)
            while delivered_bytes(sender) - before < 50_000:
                await asyncio.sleep(0.002)
            acked_at_s = time.monotonic() - record.start_s
            await asyncio.sleep(0.45)
            record.leave(key)
            record.stop()
        return record.samples, acked_at_s

    samples, acked_at_s = asyncio.run(one_burst_then_a_late_read())
    assert samples[-1][1] >= 50_000
    assert samples[-1][0] == pytest.approx(acked_at_s, abs=0.02), (samples, acked_at_s)


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_server_counts_a_download_test_by_acknowledgements(server: ServerProcess) -> None:
    """While the connection is open the count is exact: every byte read, plus the response headers."""
    test_id = "ab" * 16
    host, port = server.http_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(f"GET /v1/throughput/download?bytes=2000000&test={test_id} HTTP/1.1\r\n"
                       f"Host: {host}\r\n\r\n".encode())
        response = b""
        while b"\r\n\r\n" not in response or len(response.partition(b"\r\n\r\n")[2]) < 2_000_000:
            response += client.recv(1 << 20)
        header_bytes = len(response) - 2_000_000
        url = f"{server.http_url}/v1/throughput/download/{test_id}"
        wait_for(lambda: get_json(url)[1]["bytes"] >= len(response))  # the last acknowledgements reach the server
        status, record = get_json(url)
    assert status == 200 and record["counted_by"] == "tcp_info"
    assert record["bytes"] == 2_000_000 + header_bytes
    times = [t for t, _ in record["samples"]]
    counts = [b for _, b in record["samples"]]
    assert times == sorted(times) and counts == sorted(counts) and counts[-1] == record["bytes"]


def test_a_finished_streams_count_is_kept_after_its_socket_is_no_longer_read(server: ServerProcess) -> None:
    test_id = "ef" * 16
    with urllib.request.urlopen(f"{server.http_url}/v1/throughput/download?bytes=1000000&test={test_id}",
                                timeout=10) as response:
        assert len(response.read()) == 1_000_000
    url = f"{server.http_url}/v1/throughput/download/{test_id}"
    time.sleep(0.2)
    counted = get_json(url)[1]["bytes"]
    time.sleep(1.5)  # past the linger: the stream is folded into the test's total
    assert counted > 900_000 and get_json(url)[1]["bytes"] == counted


@pytest.mark.parametrize("path, status", [
    ("/v1/throughput/download?bytes=1000&test=not-hex", 400),
    ("/v1/throughput/download/" + "cd" * 16, 404),
])
def test_download_test_ids_are_checked(server: ServerProcess, path: str, status: int) -> None:
    assert get_json(server.http_url + path)[0] == status


# --- the client reading the server's count: a hostile answer is no count, never a crash ----------

async def server_count_of(status: int, body: bytes) -> tuple[int, list]:
    from aiohttp import ClientSession, web

    from netcheck.probes.throughput import _server_count

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/", handler)
    async with local_app(app) as url, ClientSession() as session, session.get(f"{url}/") as response:
        return await _server_count(response)


@pytest.mark.parametrize("status, body", [
    (404, b'{"error": "no such download test"}'),
    (200, b"not json"),
    (200, b"[1, 2, 3]"),
    (200, b'{"bytes": 5}'),
    (200, b'{"bytes": 5, "samples": [["a", "b"]]}'),
    (200, b'{"bytes": 5, "samples": [[1, 2, 3]]}'),
    (200, b'{"bytes": 5, "samples": [[0.1, 1]], "pad": "' + b"x" * (2 << 20) + b'"}'),
])
def test_a_servers_count_that_makes_no_sense_is_no_count(status: int, body: bytes) -> None:
    assert asyncio.run(server_count_of(status, body)) == (0, [])


def test_a_servers_count_is_read() -> None:
    assert asyncio.run(server_count_of(200, b'{"bytes": 9, "samples": [[0.05, 4], [0.1, 9]]}')) == (9, [(0.05, 4), (0.1, 9)])
