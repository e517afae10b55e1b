"""Kernel receive timestamps (netcheck/net/stamped.py): a datagram keeps the time it arrived, not the
time a busy event loop got round to it, on the monotonic clock of every other time of the probe."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

from netcheck.net import stamped


class Inbox:
    def __init__(self) -> None:
        self.arrivals: list[tuple[bytes, int, int]] = []
        """(data, receive stamp, time it was handed over), monotonic ns."""
        self.errors: list[Exception] = []

    def datagram_received(self, data: bytes, addr: tuple, recv_ns: int | None = None) -> None:
        assert recv_ns is not None
        self.arrivals.append((data, recv_ns, time.monotonic_ns()))

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)


def test_a_datagram_that_waited_for_a_stalled_loop_keeps_its_arrival_time() -> None:
    stall_ms = 150.0

    async def scenario() -> tuple[Inbox, int, bool]:
        inbox = Inbox()
        endpoint = await stamped.open_endpoint(inbox, local_addr=("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sent_ns = time.monotonic_ns()
            sender.sendto(b"ping", endpoint.get_extra_info("sockname"))
            time.sleep(stall_ms / 1000)  # the loop is busy (a synchronous commit, a window being judged)
            for _ in range(100):
                await asyncio.sleep(0.01)
                if inbox.arrivals:
                    break
        endpoint.close()
        return inbox, sent_ns, endpoint.kernel_stamps

    inbox, sent_ns, kernel_stamps = asyncio.run(scenario())
    assert kernel_stamps, "SO_TIMESTAMPNS is available on Linux"
    [(data, recv_ns, handed_ns)] = inbox.arrivals
    assert data == b"ping"
    assert 0 <= (recv_ns - sent_ns) / 1e6 < 20.0, "stamped when it arrived (loopback: microseconds)"
    assert (handed_ns - recv_ns) / 1e6 >= stall_ms - 10.0, "handed over only after the stall"


def test_a_stamp_converts_to_the_monotonic_clock_and_never_lies_in_the_future() -> None:
    offset_ns = stamped.realtime_offset_ns()
    now_mono = time.monotonic_ns()
    real_ns = now_mono + offset_ns - 5_000_000  # arrived 5 ms ago
    payload = struct.pack("@qq", real_ns // 1_000_000_000, real_ns % 1_000_000_000)
    ancdata = [(socket.SOL_SOCKET, stamped.SO_TIMESTAMPNS, payload)]
    assert abs(stamped.to_monotonic_ns(ancdata, offset_ns, now_mono) - (now_mono - 5_000_000)) < 100_000
    stepped_back = offset_ns - 1_000_000_000  # the wall clock was stepped back a second meanwhile
    assert stamped.to_monotonic_ns(ancdata, stepped_back, now_mono) == now_mono
    assert stamped.to_monotonic_ns([], offset_ns, now_mono) == now_mono  # no stamp: the loop's clock


def test_an_icmp_refusal_reaches_the_protocol_and_sends_never_block() -> None:
    async def scenario() -> Inbox:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as placeholder:
            placeholder.bind(("127.0.0.1", 0))
            closed_port = placeholder.getsockname()[1]
        inbox = Inbox()
        endpoint = await stamped.open_endpoint(inbox, remote_addr=("127.0.0.1", closed_port))
        endpoint.sendto(b"anyone?")
        for _ in range(50):
            await asyncio.sleep(0.01)
            if inbox.errors:
                break
        endpoint.close()
        endpoint.sendto(b"after close")  # ignored, no error
        return inbox

    inbox = asyncio.run(scenario())
    assert any(isinstance(error, ConnectionRefusedError) for error in inbox.errors)
