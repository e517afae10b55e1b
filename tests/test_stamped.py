"""Kernel receive timestamps (netcheck/net/stamped.py): a datagram keeps the time it arrived, not the
time a busy event loop got round to it, on the monotonic clock of every other time of the probe."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest

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


def read_after_a_stall(stall_ms: float) -> tuple[Inbox, int, bool]:
    """One datagram sent to an endpoint whose loop is then busy for `stall_ms`: what it was handed,
    the time it was sent, and whether the kernel stamped it."""
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

    return asyncio.run(scenario())


def test_a_datagram_that_waited_for_a_stalled_loop_keeps_its_arrival_time() -> None:
    stall_ms = 150.0
    inbox, sent_ns, kernel_stamps = read_after_a_stall(stall_ms)
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


def test_a_flood_is_read_a_bounded_batch_at_a_time_so_the_loop_serves_the_rest_between() -> None:
    flood = 150

    async def scenario() -> tuple[list[int], int]:
        loop = asyncio.get_running_loop()
        ticks = [0]
        stop = [False]

        def tick() -> None:  # one call per loop iteration: what else the node's loop has to do
            ticks[0] += 1
            if not stop[0]:
                loop.call_soon(tick)

        arrivals_at_tick: list[int] = []

        class Counting(Inbox):
            def datagram_received(self, data: bytes, addr: tuple, recv_ns: int | None = None) -> None:
                arrivals_at_tick.append(ticks[0])

        endpoint = await stamped.open_endpoint(Counting(), local_addr=("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for index in range(flood):  # all queued in the socket before the loop reads one
                sender.sendto(index.to_bytes(4, "big"), endpoint.get_extra_info("sockname"))
        loop.call_soon(tick)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(arrivals_at_tick) >= flood:
                break
        stop[0] = True
        endpoint.close()
        return arrivals_at_tick, ticks[0]

    arrivals_at_tick, _ = asyncio.run(scenario())
    assert len(arrivals_at_tick) == flood, "every datagram read in the end"
    per_wakeup = [arrivals_at_tick.count(tick) for tick in set(arrivals_at_tick)]
    assert max(per_wakeup) <= stamped.READS_PER_WAKEUP, per_wakeup
    assert len(per_wakeup) >= 3, "the loop ran its other callbacks between the batches"


def test_where_the_kernel_has_no_stamps_the_time_of_the_read_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stamped, "SO_TIMESTAMPNS", None)  # not Linux, or an old kernel
    stall_ms = 100.0
    inbox, sent_ns, kernel_stamps = read_after_a_stall(stall_ms)
    assert not kernel_stamps
    [(data, recv_ns, handed_ns)] = inbox.arrivals
    assert data == b"ping" and (recv_ns - sent_ns) / 1e6 >= stall_ms - 1.0, "the read's time, after the stall"
    assert 0 <= handed_ns - recv_ns < 5_000_000


def test_sends_that_would_block_wait_in_a_bounded_queue_and_leave_in_order() -> None:
    extra = 10

    async def scenario() -> tuple[list[bytes], int]:
        endpoint = await stamped.open_endpoint(Inbox(), remote_addr=("127.0.0.1", 9))
        sent: list[bytes] = []
        real_send = endpoint._send

        def full_buffer(data: bytes, addr: object) -> None:
            raise BlockingIOError

        def counted(data: bytes, addr: object) -> None:
            sent.append(data)
            real_send(data, addr)

        endpoint._send = full_buffer  # type: ignore[method-assign]
        for index in range(stamped.MAX_QUEUED_SENDS + extra):
            endpoint.sendto(index.to_bytes(4, "big"))
        endpoint._send = counted  # type: ignore[method-assign]  # the buffer drains
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(sent) >= stamped.MAX_QUEUED_SENDS:
                break
        dropped = endpoint.sends_dropped
        endpoint.close()
        return sent, dropped

    sent, dropped = asyncio.run(scenario())
    assert dropped == extra
    assert [int.from_bytes(data, "big") for data in sent] == list(range(stamped.MAX_QUEUED_SENDS))
