"""One throughput ramp (issue 24): the server's count of a page's test answers with the test's rate after
the CLI's own ramp, the figure a browser check stores, and /v1/info tells the page how long that ramp is."""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from netcheck.probes.throughput import RAMP_S, counted_rate_mbps
from tests.harness.servers import ServerProcess

CHUNK = b"\x5a" * 65536
UPLOAD_S = RAMP_S + 0.8
BYTES_PER_S = 2_000_000


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def paced_chunks(seconds: float) -> Iterator[bytes]:
    """16 Mbit/s for `seconds`: past the ramp, so that the server has a figure to give."""
    started_s = time.monotonic()
    sent = 0
    while (elapsed_s := time.monotonic() - started_s) < seconds:
        if sent > elapsed_s * BYTES_PER_S:
            time.sleep(0.01)
            continue
        sent += len(CHUNK)
        yield CHUNK


def test_the_count_of_an_upload_is_its_rate_after_the_one_ramp(server: ServerProcess) -> None:
    test_id = "a1" * 16
    host, port = server.http_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("POST", f"/v1/throughput/upload/{test_id}", body=paced_chunks(UPLOAD_S),
                       headers={"Content-Type": "application/octet-stream"}, encode_chunked=True)
    assert connection.getresponse().status == 200
    connection.close()
    record = get_json(f"{server.http_url}/v1/throughput/upload/{test_id}")
    samples = [(seconds, count) for seconds, count in record["samples"]]
    assert samples[-1][0] > RAMP_S  # measured past the ramp
    assert record["mbps"] is not None and record["mbps"] > 0
    assert record["mbps"] == counted_rate_mbps(samples)  # the figure a browser check stores (check_report)


def test_the_server_tells_the_page_its_ramp(server: ServerProcess) -> None:
    assert get_json(f"{server.http_url}/v1/info")["throughput_ramp_s"] == RAMP_S
