"""Throughput probe: download and upload over several HTTP streams, and the delay under that load.

Each stream is paced to 50 Mbit/s (server side for downloads, here for uploads): with 4 streams
the probe measures up to 200 Mbit/s, which is plenty for a video session.

Each phase ramps up (slow start, not measured), then measures in 250 ms bins until the rate is
stable or the phase's time is up. A UDP probe runs against the reflector while the link is
loaded: how far its RTT rises above the idle RTT is the bufferbloat a video call will feel.

Bytes are counted by the sending side's kernel where it can tell (TCP_INFO, Linux): the server's
for downloads, ours for uploads. Where it cannot, the receiver's count is used (ours for
downloads, the server's for uploads), which after losses lags in bursts (see netcheck/net/tcp_info.py).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from netcheck import bounds
from netcheck.net.httpio import (
    BUSY_WAIT_BUDGET_S, MAX_STREAM_MBPS, BodyTooLarge, Pacer, ServerBusy, bearer, busy_message, read_bounded,
    retry_after_s,
)
from netcheck.model import Status
from netcheck.results import ThroughputResult
from netcheck.probes.udp import UdpProbe, UdpProbeSettings
from netcheck.net.tcp_info import delivered_bytes, tcp_info_available
from netcheck.net.wire import ClientKey

RAMP_S = 1.0
"""Slow start, not measured (bytes nor delay): the CLI's phases, the server's count of a page's tests
(`counted_rate_mbps`) and the page itself, told by /v1/info (`throughput_ramp_s`), skip the same second."""
BIN_S = 0.25
STABLE_BINS = 4
STABLE_SPREAD = 0.10
"""Stop early when, after MIN_MEASURE_S, the last 4 bins are within ±10 % of their mean (and the UDP
probe is done)."""
LOADED_UDP_S = 1.0
MIN_MEASURE_S = 1.5
IDLE_UDP_S = 0.5
REQUEST_BYTES = 1 << 30
HTTP_TIMEOUT_S = 5.0
MAX_COUNT_BYTES = 1 << 20
"""The server's count of a test: 4,000 samples at most, about 100 kB."""


@dataclass(frozen=True)
class ThroughputSettings:
    duration_s: float = 4.0
    """Both phases together, ramps included."""
    streams: int = 4
    hmac_key: bytes | None = field(default=None, repr=False)
    client_key: ClientKey | None = None
    """The reflector's key for this client, for the loaded-RTT stream."""
    token: str | None = field(default=None, repr=False)
    on_busy: Callable[[str], None] | None = field(default=None, repr=False, compare=False)
    udp_wait_max_s: float = 2.0
    """The idle and loaded RTT streams' wait for late answers (UdpProbeSettings.wait_max_s)."""

    def validate(self) -> None:
        bounds.THROUGHPUT_DURATION_S.check(self.duration_s, "duration", f"{self.duration_s:g} s")
        bounds.THROUGHPUT_STREAMS.check(self.streams, "streams")


def failed_result(status: Status, error: str) -> ThroughputResult:
    return ThroughputResult(status=status, download_mbps=None, upload_mbps=None, idle_rtt_ms=None,
                            loaded_rtt_down_ms=None, loaded_rtt_up_ms=None, bufferbloat_ms=None, bytes_down=None,
                            bytes_up=None, backend="netcheck", error=error)


class _Phase:
    """Bytes moved by one direction's streams, their sockets, and the signal to stop them."""

    def __init__(self) -> None:
        self.total_bytes = 0
        """Arrivals (download) or hand-overs to the socket (upload), as the application sees them."""
        self.stop = asyncio.Event()
        self._sockets: list[socket.socket] = []
        self._acknowledged: dict[int, int] = {}
        """Last TCP_INFO reading per socket (a closed socket keeps its last one)."""

    def make_socket(self, addr_info: tuple) -> socket.socket:
        """aiohttp's socket_factory: a plain TCP socket, remembered so the phase can read TCP_INFO."""
        family, kind, proto = addr_info[:3]
        sock = socket.socket(family=family, type=kind, proto=proto)
        self._sockets.append(sock)
        return sock

    def acknowledged_bytes(self) -> int | None:
        """Bytes the server acknowledged over all streams of the phase (TCP_INFO); None if unknown."""
        if not tcp_info_available():
            return None
        for index, sock in enumerate(self._sockets):
            reading = delivered_bytes(sock)
            if reading is not None:
                self._acknowledged[index] = max(reading, self._acknowledged.get(index, 0))
        return sum(self._acknowledged.values()) if self._acknowledged else None


def rate_bins_mbps(samples: list[tuple[float, int]]) -> list[float]:
    """Rates between consecutive (seconds, cumulative bytes) samples."""
    return [(b1 - b0) * 8 / (t1 - t0) / 1e6 for (t0, b0), (t1, b1) in zip(samples, samples[1:]) if t1 > t0]


def rate_after_ramp_mbps(samples: list[tuple[float, int]], ramp_s: float) -> float | None:
    """Mean rate from the first sample at or after `ramp_s` to the last sample.

    Counting where bytes arrive comes in bursts (a busy event loop leaves data in the socket
    buffer, then reads it at once), so only a mean over the whole window is unbiased.
    """
    measured = [(t, b) for t, b in samples if t >= ramp_s]
    if len(measured) < 2:
        return None
    (t0, b0), (t1, b1) = measured[0], measured[-1]
    return (b1 - b0) * 8 / (t1 - t0) / 1e6 if t1 > t0 and b1 > b0 else None


def counted_rate_mbps(samples: list[tuple[float, int]]) -> float | None:
    """A test's figure from the server's count (to 10 kbit/s), after the one ramp, RAMP_S: what the
    server's count endpoints tell a page and what a browser check stores."""
    rate = rate_after_ramp_mbps(samples, RAMP_S)
    return round(rate, 2) if rate is not None else None


def settled(samples: list[tuple[float, int]]) -> bool:
    """Enough measured, the last bins agree, and they are not a stall below the mean so far."""
    if samples[-1][0] - samples[0][0] < MIN_MEASURE_S:
        return False
    bins = rate_bins_mbps(samples)[-STABLE_BINS:]
    mean_so_far = (samples[-1][1] - samples[0][1]) * 8 / (samples[-1][0] - samples[0][0]) / 1e6
    return len(bins) == STABLE_BINS and _stable(bins) and statistics.fmean(bins) >= 0.9 * mean_so_far


class ThroughputProbe:
    """Saturate the link to a netcheck server, one direction at a time."""

    name = "throughput"

    def __init__(self, server_url: str, udp_target: tuple[str, int] | None,
                 settings: ThroughputSettings = ThroughputSettings()) -> None:
        settings.validate()
        self.server_url = server_url
        self.udp_target = udp_target
        self.settings = settings

    async def run(self) -> ThroughputResult:
        """Both directions; while the server answers busy (429), wait as it says and start again, for
        at most BUSY_WAIT_BUDGET_S in all."""
        deadline_s = time.monotonic() + BUSY_WAIT_BUDGET_S
        while True:
            try:
                return await self._measure()
            except ServerBusy as busy:
                if time.monotonic() + busy.retry_after_s > deadline_s:
                    return failed_result(Status.TIMEOUT, f"the clinic's test server stayed busy for "
                                         f"{BUSY_WAIT_BUDGET_S:g} s: try again later")
                if self.settings.on_busy is not None:
                    self.settings.on_busy(busy_message(busy.retry_after_s))
                await asyncio.sleep(busy.retry_after_s)

    def _udp_settings(self, duration_s: float) -> UdpProbeSettings:
        return UdpProbeSettings(interval_ms=20.0, duration_s=duration_s, hmac_key=self.settings.hmac_key,
                                client_key=self.settings.client_key, wait_max_s=self.settings.udp_wait_max_s)

    async def _measure(self) -> ThroughputResult:
        import aiohttp

        idle = await UdpProbe(*self.udp_target, self._udp_settings(IDLE_UDP_S)).run() if self.udp_target else None
        phase_s = self.settings.duration_s / 2
        try:
            down_mbps, bytes_down, loaded_down = await self._phase(self._download, phase_s)
            up_mbps, bytes_up, loaded_up = await self._phase(self._upload, phase_s)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            return failed_result(Status.UNREACHABLE, f"throughput server: {type(error).__name__}: {error}")
        if down_mbps is None and up_mbps is None:
            return failed_result(Status.ERROR, "no bytes crossed in either direction")
        idle_ms = idle.rtt_p95_ms if idle is not None else None
        loaded = [rtt for rtt in (loaded_down, loaded_up) if rtt is not None]
        return ThroughputResult(
            status=Status.OK,
            download_mbps=_round(down_mbps),
            upload_mbps=_round(up_mbps),
            idle_rtt_ms=_round(idle_ms),
            loaded_rtt_down_ms=_round(loaded_down),
            loaded_rtt_up_ms=_round(loaded_up),
            bufferbloat_ms=_round(max(0.0, max(loaded) - idle_ms)) if loaded and idle_ms is not None else None,
            bytes_down=bytes_down,
            bytes_up=bytes_up,
            backend="netcheck",
            error=None,
        )

    async def _phase(self, transfer, max_s: float) -> tuple[float | None, int, float | None]:
        """Load one direction; return (Mbps after the ramp, bytes that arrived, loaded RTT p95)."""
        import aiohttp

        phase = _Phase()
        connector = aiohttp.TCPConnector(limit=0, force_close=True, socket_factory=phase.make_socket)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=HTTP_TIMEOUT_S, sock_read=HTTP_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                         headers=bearer(self.settings.token)) as http:
            return await self._load(http, phase, transfer, max_s)

    async def _load(self, http, phase: _Phase, transfer, max_s: float) -> tuple[float | None, int, float | None]:
        uploading = transfer == self._upload
        test_id = secrets.token_hex(16)
        streams = [asyncio.ensure_future(transfer(http, phase, test_id)) for _ in range(self.settings.streams)]
        start_s = time.monotonic()
        samples: list[tuple[float, int]] = []  # arrivals (down); acknowledged or handed over (up)
        loaded_udp = None
        counted_by_kernel = uploading

        def count_now() -> int:
            nonlocal counted_by_kernel
            acknowledged = phase.acknowledged_bytes() if counted_by_kernel else None
            counted_by_kernel = acknowledged is not None
            return acknowledged if acknowledged is not None else phase.total_bytes

        try:
            await asyncio.sleep(RAMP_S)
            for stream in streams:  # a busy server refuses at once: start again when it has room
                if stream.done() and isinstance(stream.exception(), ServerBusy):
                    raise stream.exception()  # type: ignore[misc]
            if all(stream.done() for stream in streams):
                for stream in streams:
                    stream.result()  # surfaces the connection error
            if self.udp_target:
                loaded_udp = asyncio.ensure_future(UdpProbe(*self.udp_target, self._udp_settings(LOADED_UDP_S)).run())
            samples.append((time.monotonic() - start_s, count_now()))
            while time.monotonic() - start_s < max_s:
                await asyncio.sleep(BIN_S)
                samples.append((time.monotonic() - start_s, count_now()))
                udp_done = loaded_udp is None or loaded_udp.done()
                if udp_done and settled(samples):
                    break
        finally:
            phase.stop.set()
            for stream in streams:
                stream.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
        udp_result = await loaded_udp if loaded_udp is not None else None
        loaded_rtt_ms = udp_result.rtt_p95_ms if udp_result is not None else None
        if counted_by_kernel and samples:  # our upload, counted by our kernel as the sender
            return rate_after_ramp_mbps(samples, RAMP_S), samples[-1][1], loaded_rtt_ms
        # the other end's count, over time: the sender's (download) or the receiver's (upload)
        direction = "upload" if uploading else "download"
        async with http.get(f"{self.server_url}/v1/throughput/{direction}/{test_id}") as response:
            server_bytes, server_samples = await _server_count(response)
        if uploading or server_samples:
            return rate_after_ramp_mbps(server_samples, RAMP_S), server_bytes, loaded_rtt_ms
        return rate_after_ramp_mbps(samples, RAMP_S), phase.total_bytes, loaded_rtt_ms  # a server without TCP_INFO

    async def _download(self, http, phase: _Phase, test_id: str) -> None:
        url = f"{self.server_url}/v1/throughput/download?bytes={REQUEST_BYTES}&test={test_id}"
        while not phase.stop.is_set():
            async with http.get(url) as response:
                if response.status == 429:
                    raise ServerBusy(retry_after_s(response.headers))
                response.raise_for_status()
                async for chunk in response.content.iter_any():  # count bytes as they arrive
                    phase.total_bytes += len(chunk)
                    if phase.stop.is_set():
                        return

    async def _upload(self, http, phase: _Phase, test_id: str) -> None:
        payload = secrets.token_bytes(64 * 1024)
        pacer = Pacer(MAX_STREAM_MBPS)

        async def body():
            while not phase.stop.is_set():
                phase.total_bytes += len(payload)
                yield payload
                await pacer.sent(len(payload))

        url = f"{self.server_url}/v1/throughput/upload/{test_id}"
        while not phase.stop.is_set():
            async with http.post(url, data=body()) as response:
                if response.status == 429:
                    raise ServerBusy(retry_after_s(response.headers))
                if response.status != 413:  # 413: this request reached the server's size bound; send another
                    response.raise_for_status()


async def _server_count(response) -> tuple[int, list[tuple[float, int]]]:
    """(bytes, [(seconds, bytes so far), …]) from the server's count of a test; nothing if it has none
    or answers with something else (bounded: a hostile server cannot make us read more)."""
    if response.status != 200:
        return 0, []
    try:
        record = json.loads(await read_bounded(response, MAX_COUNT_BYTES))
        samples = [(float(t), int(b)) for t, b in record["samples"]]
        return int(record["bytes"]), samples
    except (BodyTooLarge, ValueError, TypeError, KeyError):
        return 0, []


def _stable(bins: list[float]) -> bool:
    mean = statistics.fmean(bins)
    return mean > 0 and all(abs(value - mean) <= STABLE_SPREAD * mean for value in bins)


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
