"""A UDP endpoint whose datagrams carry the kernel's receive time, on the monotonic clock.

Why: a receive time read in Python when the event loop gets round to the datagram includes every
stall of that loop (a store's commit, a tab's window, a check being judged), and the probe would
report the node's own stalls as the client's jitter. The kernel stamps each datagram as it arrives
(`SO_TIMESTAMPNS`, read from `recvmsg`'s ancillary data), whatever the loop is doing then.

The kernel's stamp is CLOCK_REALTIME; every other time of the probe and the reflector is
`time.monotonic_ns()` (CLOCK_MONOTONIC, which no clock step moves). A stamp is converted with the
offset REALTIME − MONOTONIC sampled when the datagrams are read (`realtime_offset_ns`): both clocks
run at the same, NTP-disciplined rate, so the offset changes only when the wall clock is stepped,
and a step between a datagram's arrival and its read (microseconds, or the loop's stall) is the
only error left. A converted stamp is never later than the time it was read (`to_monotonic_ns`).

Where the option is missing (not Linux, or the kernel refuses it) the endpoint falls back to the
loop's clock, `time.monotonic_ns()` when the datagram is read: `kernel_stamps` says which.
The socket is non-blocking and read with `loop.add_reader`; sends that would block wait in a
bounded queue (`MAX_QUEUED_SENDS`), beyond which they are dropped and counted, as UDP may.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import struct
import sys
import time
from typing import Any, Protocol

SO_TIMESTAMPNS: int | None = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") else None)
"""Python 3.11 does not export it on every build; 35 is its value on Linux (asm-generic/socket.h)."""
TIMESPEC = struct.Struct("@qq")
"""struct timespec on 64-bit Linux: tv_sec, tv_nsec."""
MAX_DATAGRAM_BYTES = 1473
"""One byte more than the wire format allows (wire.MAX_PACKET_BYTES): a larger datagram arrives
truncated to this, still too long, and is dropped as malformed by whoever decodes it."""
READS_PER_WAKEUP = 64
"""Datagrams read per readiness callback at most, so that a flood cannot hold the loop."""
MAX_QUEUED_SENDS = 1024
"""Sends waiting for a full socket buffer to drain, at most."""


class StampedProtocol(Protocol):
    """What the endpoint calls: `datagram_received` with the datagram's receive time (monotonic ns),
    `error_received`, and `connection_made(endpoint)` when the protocol has one."""

    def datagram_received(self, data: bytes, addr: Any, recv_ns: int | None = None) -> None: ...

    def error_received(self, exc: Exception) -> None: ...


def realtime_offset_ns() -> int:
    """CLOCK_REALTIME − CLOCK_MONOTONIC now, the wall clock read between two monotonic reads."""
    before = time.monotonic_ns()
    real = time.time_ns()
    after = time.monotonic_ns()
    return real - (before + after) // 2


def to_monotonic_ns(ancdata: list[tuple[int, int, bytes]], offset_ns: int, read_ns: int) -> int:
    """The kernel's receive stamp in `ancdata` on the monotonic clock; `read_ns` when there is none."""
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= TIMESPEC.size:
            seconds, nanoseconds = TIMESPEC.unpack_from(payload)
            return min(read_ns, seconds * 1_000_000_000 + nanoseconds - offset_ns)
    return read_ns


def enable_kernel_stamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp every datagram; False where it cannot (the loop's clock is used)."""
    if SO_TIMESTAMPNS is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


class StampedEndpoint:
    """A non-blocking UDP socket read with `recvmsg` on the loop; transport-like (`sendto`, `close`,
    `get_extra_info`), so the protocols that used asyncio's datagram transport keep their shape."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: StampedProtocol,
                 connected: bool) -> None:
        self.loop = loop
        self.sock = sock
        self.protocol = protocol
        self.connected = connected
        self.kernel_stamps = enable_kernel_stamps(sock)
        self.sends_dropped = 0
        self._ancillary_bytes = socket.CMSG_SPACE(TIMESPEC.size)
        self._queued: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._closed = False
        loop.add_reader(sock.fileno(), self._read)
        connection_made = getattr(protocol, "connection_made", None)
        if connection_made is not None:
            connection_made(self)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self.sock
        if name == "sockname":
            return self.sock.getsockname()
        if name == "peername" and self.connected:
            return self.sock.getpeername()
        return default

    def is_closing(self) -> bool:
        return self._closed

    def sendto(self, data: bytes, addr: Any = None) -> None:
        """Send now, or queue while the socket buffer is full; an error goes to `error_received`."""
        if self._closed:
            return
        if self._queued:
            self._queue(data, addr)
            return
        try:
            self._send(data, addr)
        except (BlockingIOError, InterruptedError):
            self._queue(data, addr)
            self.loop.add_writer(self.sock.fileno(), self._drain)
        except OSError as error:
            self.protocol.error_received(error)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.loop.remove_reader(self.sock.fileno())
        self.loop.remove_writer(self.sock.fileno())
        self.sock.close()

    def _send(self, data: bytes, addr: Any) -> None:
        if self.connected or addr is None:
            self.sock.send(data)
        else:
            self.sock.sendto(data, addr)

    def _queue(self, data: bytes, addr: Any) -> None:
        if len(self._queued) >= MAX_QUEUED_SENDS:
            self.sends_dropped += 1
            return
        self._queued.append((data, addr))

    def _drain(self) -> None:
        while self._queued:
            data, addr = self._queued[0]
            try:
                self._send(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                self.protocol.error_received(error)
            self._queued.popleft()
        self.loop.remove_writer(self.sock.fileno())

    def _read(self) -> None:
        offset_ns = realtime_offset_ns()
        for _ in range(READS_PER_WAKEUP):
            if self._closed:
                return
            try:
                data, ancdata, _flags, addr = self.sock.recvmsg(MAX_DATAGRAM_BYTES, self._ancillary_bytes)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # an ICMP error for a connected socket (port unreachable)
                self.protocol.error_received(error)
                continue
            self.protocol.datagram_received(data, addr, to_monotonic_ns(ancdata, offset_ns, time.monotonic_ns()))


async def open_endpoint(protocol: StampedProtocol, *, local_addr: tuple[str, int] | None = None,
                        remote_addr: tuple[str, int] | None = None, family: int = socket.AF_INET) -> StampedEndpoint:
    """A stamped UDP endpoint bound to `local_addr` and/or connected to `remote_addr` (numeric or names);
    OSError when the socket cannot be made, bound or connected, as `create_datagram_endpoint` raises."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if local_addr is not None:
            infos = await loop.getaddrinfo(*local_addr, family=family, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
            sock.bind(infos[0][4])
        if remote_addr is not None:
            infos = await loop.getaddrinfo(*remote_addr, family=family, type=socket.SOCK_DGRAM)
            await loop.sock_connect(sock, infos[0][4])
        return StampedEndpoint(loop, sock, protocol, connected=remote_addr is not None)
    except BaseException:
        sock.close()
        raise
