"""Throughput endpoints: streamed download and upload, bounded in size, streams and lifetime.

Upload is counted where it arrives, at the server, per test id, because bytes a client has
handed to its socket are not bytes that crossed the link (send buffers hold a second or more
of a slow uplink). Download is counted here too, as the sender: bytes the client's kernel has
acknowledged (TCP_INFO, see netcheck/net/tcp_info.py), which a receiver's in-order count lags by up
to a retransmission timeout.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import OrderedDict

from aiohttp import web

from netcheck.net.httpio import MAX_STREAM_MBPS, Pacer
from netcheck.server.access import MeasuringAccess
from netcheck.server.admission import Busy, FairShare
from netcheck.server.refusal import Refusal, busy
from netcheck.net.tcp_info import delivered_bytes, delivery_reading, tcp_info_available
from netcheck.probes.throughput import counted_rate_mbps

CHUNK_BYTES = 64 * 1024
MAX_TRANSFER_BYTES = 1 << 30
MAX_STREAMS = 32
MAX_TESTS = 64
SAMPLE_EVERY_S = 0.05
MAX_SAMPLES = 4000
LINGER_S = 1.0
"""How long a download stream's socket is still read after the stream ended."""
TEST_ID = re.compile(r"^[0-9a-f]{16,64}$")
STREAM_LIFETIME_S = 60.0
"""No stream lives longer: the longest test is 60 s in all."""
IDLE_TIMEOUT_S = 10.0
"""A download the client stops reading, or an upload that stops sending, is cut after this."""
TRICKLE_GRACE_S = 5.0
MIN_UPLOAD_BYTES_PER_S = 4000
"""After the grace period an upload must average 32 kbit/s (a slow uplink does ten times that): an
upload that trickles only to hold a stream is cut."""


class ThroughputEndpoints:
    def __init__(self, access: MeasuringAccess | None = None, share: FairShare | None = None) -> None:
        self.access = access or MeasuringAccess(None)
        self.share = share or FairShare("throughput streams", per_client=MAX_STREAMS, total=MAX_STREAMS,
                                        expected_hold_s=8.0)
        self.active_streams = 0
        self.uploaded: OrderedDict[str, UploadRecord] = OrderedDict()
        self.downloaded: OrderedDict[str, DownloadRecord] = OrderedDict()
        self._payload = os.urandom(CHUNK_BYTES)  # incompressible, so no middlebox shrinks it

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/throughput/download", self.download)
        app.router.add_post("/v1/throughput/upload/{test_id}", self.upload)
        app.router.add_get("/v1/throughput/upload/{test_id}", self.upload_count)
        app.router.add_get("/v1/throughput/download/{test_id}", self.download_count)

    async def download(self, request: web.Request) -> web.StreamResponse:
        try:
            size = int(request.query.get("bytes", "0"))
        except ValueError:
            size = -1
        if not 0 < size <= MAX_TRANSFER_BYTES:
            raise Refusal(400, "bad_query", f"bytes must be 1..{MAX_TRANSFER_BYTES}")
        test_id = request.query.get("test")
        if test_id is not None and not TEST_ID.match(test_id):
            raise Refusal(400, "bad_query", "bad test id")
        slot = self.share.acquire(self.access.caller(request).client)
        if isinstance(slot, Busy):
            raise busy(slot.retry_after_s, slot.reason)
        self.active_streams += 1
        record = self._download_record(test_id) if test_id is not None and tcp_info_available() else None
        stream = record.join(request.transport.get_extra_info("socket")) if record and request.transport else None
        try:
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                                   "Cache-Control": "no-store"})
            response.content_length = size
            await response.prepare(request)
            remaining = size
            pacer = Pacer(MAX_STREAM_MBPS)
            ends_s = time.monotonic() + STREAM_LIFETIME_S
            try:
                while remaining > 0 and time.monotonic() < ends_s:
                    piece = self._payload if remaining >= CHUNK_BYTES else self._payload[:remaining]
                    await asyncio.wait_for(response.write(piece), IDLE_TIMEOUT_S)
                    remaining -= len(piece)
                    await pacer.sent(len(piece))
                if remaining == 0:
                    await response.write_eof()
                elif request.transport is not None:  # lived its lifetime: end it short, as a cut
                    request.transport.close()
            except ConnectionError:  # the client ends its streams by closing them: the usual way out
                pass
            except asyncio.TimeoutError:  # not read for IDLE_TIMEOUT_S: the client is gone or holding on
                if request.transport is not None:
                    request.transport.close()
            return response
        finally:
            self.active_streams -= 1
            slot.release()
            if record is not None and stream is not None:
                record.leave(stream)

    async def upload(self, request: web.Request) -> web.Response:
        test_id = request.match_info["test_id"]
        if not TEST_ID.match(test_id):
            raise Refusal(400, "bad_query", "bad test id")
        slot = self.share.acquire(self.access.caller(request).client)
        if isinstance(slot, Busy):
            raise busy(slot.retry_after_s, slot.reason)
        self.active_streams += 1
        try:
            self._count(test_id, 0)
            request_bytes = 0
            started_s = time.monotonic()
            try:
                while True:  # as it arrives: 64 KiB pieces are 1 s apart on a slow link
                    chunk = await asyncio.wait_for(request.content.readany(), IDLE_TIMEOUT_S)
                    if not chunk:
                        break
                    self._count(test_id, len(chunk))
                    request_bytes += len(chunk)
                    if request_bytes > MAX_TRANSFER_BYTES:  # a client that wants more sends another request
                        raise Refusal(413, "too_large", "upload too large")
                    elapsed_s = time.monotonic() - started_s
                    if elapsed_s > STREAM_LIFETIME_S:
                        raise Refusal(408, "too_long", "upload longer than a test may last")
                    if elapsed_s > TRICKLE_GRACE_S and request_bytes < MIN_UPLOAD_BYTES_PER_S * elapsed_s:
                        raise Refusal(408, "too_slow", "upload too slow: cut")
            except asyncio.TimeoutError:
                raise Refusal(408, "too_slow", f"no upload data for {IDLE_TIMEOUT_S:g} s: cut") from None
            except ConnectionError:
                pass
            return web.json_response({"bytes": self.uploaded[test_id].total_bytes})
        finally:
            self.active_streams -= 1
            slot.release()

    async def upload_count(self, request: web.Request) -> web.Response:
        """What arrived of an upload test over time: [[seconds since its first byte, bytes so far], …],
        and its rate after the ramp (`mbps`, the figure a browser check stores)."""
        self.access.caller(request)
        record = self.uploaded.get(request.match_info["test_id"])
        if record is None:
            raise Refusal(404, "not_found", "no such upload test")
        return web.json_response({"bytes": record.total_bytes, "samples": record.samples,
                                  "mbps": counted_rate_mbps(record.samples)})

    async def download_count(self, request: web.Request) -> web.Response:
        """What reached the client of a download test over time, by the kernel's acknowledgements."""
        self.access.caller(request)
        record = self.downloaded.get(request.match_info["test_id"])
        if record is None:
            raise Refusal(404, "not_found", "no such download test")
        return web.json_response({"bytes": record.total_bytes(), "samples": record.samples,
                                  "mbps": counted_rate_mbps(record.samples), "counted_by": "tcp_info"})

    def _download_record(self, test_id: str) -> DownloadRecord:
        record = self.downloaded.pop(test_id, None) or DownloadRecord()
        self.downloaded[test_id] = record
        while len(self.downloaded) > MAX_TESTS:
            self.downloaded.popitem(last=False)[1].stop()
        return record

    def _count(self, test_id: str, received: int) -> int:
        record = self.uploaded.pop(test_id, None) or UploadRecord()
        self.uploaded[test_id] = record
        while len(self.uploaded) > MAX_TESTS:
            self.uploaded.popitem(last=False)
        return record.add(received)


class UploadRecord:
    """Bytes received for one upload test, sampled every 50 ms (bounded)."""

    def __init__(self) -> None:
        self.total_bytes = 0
        self.start_s: float | None = None
        self.samples: list[tuple[float, int]] = []

    def add(self, received: int) -> int:
        now_s = time.monotonic()
        if self.start_s is None:
            self.start_s = now_s
        self.total_bytes += received
        elapsed_s = now_s - self.start_s
        if (not self.samples or elapsed_s - self.samples[-1][0] >= SAMPLE_EVERY_S) and len(self.samples) < MAX_SAMPLES:
            self.samples.append((round(elapsed_s, 4), self.total_bytes))
        return self.total_bytes



class DownloadRecord:
    """Bytes of one download test acknowledged by the client, over all its streams, sampled every 50 ms.

    One sampling task runs while the test has a stream open, and a second longer for the last
    acknowledgements of streams that ended; samples are [seconds since the test's first stream,
    bytes so far], taken when the count moved, as the upload's are (bounded).
    """

    def __init__(self) -> None:
        self.start_s = time.monotonic()
        self.samples: list[tuple[float, int]] = []
        self._sockets: dict[int, object] = {}
        self._left_at_s: dict[int, float] = {}
        self._baseline: dict[int, int] = {}
        self._delivered: dict[int, int] = {}
        self._finished_bytes = 0
        """Of streams no longer read: folded in, so a test's memory is bounded by its open streams."""
        self._next_stream = 0
        self._sampler: asyncio.Task | None = None

    def join(self, sock) -> int | None:
        """Start counting a stream's socket; its key, or None when the kernel cannot tell."""
        baseline = delivered_bytes(sock) if sock is not None else None
        if baseline is None:
            return None
        key = self._next_stream
        self._next_stream += 1
        self._sockets[key], self._baseline[key], self._delivered[key] = sock, baseline, 0
        if self._sampler is None or self._sampler.done():
            self._sampler = asyncio.ensure_future(self._sample_while_open())
        return key

    def leave(self, key: int) -> None:
        """The stream ended; its socket is read a little longer, for acknowledgements still on the way."""
        self._left_at_s[key] = time.monotonic()

    def total_bytes(self) -> int:
        return self._finished_bytes + sum(self._delivered.values())

    def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()

    def _read(self, key: int) -> float | None:
        """Fold in a stream's count; when its last acknowledgement arrived (monotonic s), or None for a
        socket that can no longer tell (a closed socket keeps its last reading)."""
        sock = self._sockets.get(key)
        reading = delivery_reading(sock) if sock is not None else None
        if reading is None:
            return None
        delivered, since_last_ack_s = reading
        self._delivered[key] = max(self._delivered[key], delivered - self._baseline[key])
        return time.monotonic() - since_last_ack_s

    def _take_sample(self) -> None:
        now_s = time.monotonic()
        last_ack_s: float | None = None
        for key in list(self._sockets):
            acked_s = self._read(key)
            if acked_s is not None:
                last_ack_s = acked_s if last_ack_s is None else max(last_ack_s, acked_s)
            if now_s - self._left_at_s.get(key, now_s) > LINGER_S:
                del self._sockets[key], self._baseline[key], self._left_at_s[key]
                self._finished_bytes += self._delivered.pop(key)
        total_bytes = self.total_bytes()
        # only when it moved: samples of a test that ended would stretch its window without bytes
        if len(self.samples) < MAX_SAMPLES and (not self.samples or total_bytes != self.samples[-1][1]):
            # stamped when the count was true, at its last acknowledgement, not when it was read: the
            # read after a test ended would end its window up to SAMPLE_EVERY_S late (measured: 8/2
            # Mbit/s read up to 3.4 % low, in proportion to that stretch over a 2–4 s window)
            at_s = (last_ack_s if last_ack_s is not None else now_s) - self.start_s
            at_s = max(at_s, self.samples[-1][0]) if self.samples else at_s
            self.samples.append((round(at_s, 4), total_bytes))

    async def _sample_while_open(self) -> None:
        while self._sockets:
            self._take_sample()
            await asyncio.sleep(SAMPLE_EVERY_S)
