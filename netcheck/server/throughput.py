"""Throughput endpoints: streamed download and upload, bounded in size, streams and lifetime.

Upload is counted where it arrives, at the server, per test id, because bytes a client has
handed to its socket are not bytes that crossed the link (send buffers hold a second or more
of a slow uplink).
"""

from __future__ import annotations

import os
import re
import time
from collections import OrderedDict

from aiohttp import web

from netcheck.httpio import MAX_STREAM_MBPS, Pacer

CHUNK_BYTES = 64 * 1024
MAX_TRANSFER_BYTES = 1 << 30
MAX_STREAMS = 32
MAX_TESTS = 64
SAMPLE_EVERY_S = 0.05
MAX_SAMPLES = 4000
TEST_ID = re.compile(r"^[0-9a-f]{16,64}$")


class ThroughputEndpoints:
    def __init__(self) -> None:
        self.active_streams = 0
        self.uploaded: OrderedDict[str, UploadRecord] = OrderedDict()
        self._payload = os.urandom(CHUNK_BYTES)  # incompressible, so no middlebox shrinks it

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/throughput/download", self.download)
        app.router.add_post("/v1/throughput/upload/{test_id}", self.upload)
        app.router.add_get("/v1/throughput/upload/{test_id}", self.upload_count)

    async def download(self, request: web.Request) -> web.StreamResponse:
        try:
            size = int(request.query.get("bytes", "0"))
        except ValueError:
            size = -1
        if not 0 < size <= MAX_TRANSFER_BYTES:
            return web.json_response({"error": f"bytes must be 1..{MAX_TRANSFER_BYTES}"}, status=400)
        if self.active_streams >= MAX_STREAMS:
            return web.json_response({"error": "too many throughput streams"}, status=503)
        self.active_streams += 1
        try:
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                                   "Cache-Control": "no-store"})
            response.content_length = size
            await response.prepare(request)
            remaining = size
            pacer = Pacer(MAX_STREAM_MBPS)
            try:
                while remaining > 0:
                    piece = self._payload if remaining >= CHUNK_BYTES else self._payload[:remaining]
                    await response.write(piece)
                    remaining -= len(piece)
                    await pacer.sent(len(piece))
                await response.write_eof()
            except ConnectionError:  # the client ends its streams by closing them: the usual way out
                pass
            return response
        finally:
            self.active_streams -= 1

    async def upload(self, request: web.Request) -> web.Response:
        test_id = request.match_info["test_id"]
        if not TEST_ID.match(test_id):
            return web.json_response({"error": "bad test id"}, status=400)
        if self.active_streams >= MAX_STREAMS:
            return web.json_response({"error": "too many throughput streams"}, status=503)
        self.active_streams += 1
        try:
            self._count(test_id, 0)
            request_bytes = 0
            try:
                async for chunk in request.content.iter_any():  # as it arrives: 64 KiB pieces are 1 s apart on a slow link
                    self._count(test_id, len(chunk))
                    request_bytes += len(chunk)
                    if request_bytes > MAX_TRANSFER_BYTES:  # a client that wants more sends another request
                        return web.json_response({"error": "upload too large"}, status=413)
            except ConnectionError:
                pass
            return web.json_response({"bytes": self.uploaded[test_id].total_bytes})
        finally:
            self.active_streams -= 1

    async def upload_count(self, request: web.Request) -> web.Response:
        """What arrived of an upload test over time: [[seconds since its first byte, bytes so far], …]."""
        record = self.uploaded.get(request.match_info["test_id"])
        if record is None:
            return web.json_response({"error": "no such upload test"}, status=404)
        return web.json_response({"bytes": record.total_bytes, "samples": record.samples})

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

