"""The UDP probe against a real in-process reflector, and against a deliberately hostile one."""

from __future__ import annotations

import asyncio

import pytest

from netcheck.net import wire
from netcheck.model import Status
from netcheck.probes.udp import MAX_REPLIES_PER_PACKET, UdpProbe, UdpProbeSettings
from netcheck.server.app import start_server


async def probe_local_server(settings: UdpProbeSettings, rate_pps: float = 1000.0):
    server = await start_server("127.0.0.1", 0, 0, rate_pps=rate_pps, open_reflector=True)  # untagged: a probe test
    try:
        return await UdpProbe("127.0.0.1", server.udp_port, settings).run(), server.reflector.counters
    finally:
        await server.close()


@pytest.mark.slow
@pytest.mark.measures  # the burst length stands on a 2 ms send schedule, which two busy cores bend
def test_rate_limited_packets_count_as_upstream_loss() -> None:
    settings = UdpProbeSettings(interval_ms=2.0, duration_s=1.0)  # 500 packets at 500/s
    result, counters = asyncio.run(probe_local_server(settings, rate_pps=50.0))  # burst 200, then 50/s
    assert result.status == Status.OK
    assert counters.dropped_rate_limited > 0
    answered = counters.answered - 1  # minus the stats reply
    assert result.packets_received == answered
    assert result.loss_up_pct == pytest.approx(100 * (500 - answered) / 500, abs=0.5)
    assert result.loss_down_pct == 0.0
    # after the 200-packet burst, 50/s of 500/s pass: one packet in ten, so bursts of about nine
    assert 5 <= result.loss_burst_max <= 12


class DuplicatingReflector(asyncio.DatagramProtocol):
    """A FAKE hostile reflector: answers every request ten times and adds garbage."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        request = wire.decode(data)
        reply = wire.encode(wire.reply_to(request, request.seq + 1, 0, 0))
        for _ in range(10):
            self.transport.sendto(reply, addr)
        self.transport.sendto(b"\xff" * 1400, addr)


async def probe_hostile_reflector(settings: UdpProbeSettings):
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(DuplicatingReflector, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        return await UdpProbe("127.0.0.1", port, settings).run()
    finally:
        transport.close()


def test_flooding_reflector_cannot_grow_the_probe_without_bound() -> None:
    settings = UdpProbeSettings(interval_ms=10.0, duration_s=0.5)
    result = asyncio.run(probe_hostile_reflector(settings))
    sent = settings.packet_count
    assert result.status == Status.OK
    assert result.packets_received == sent
    assert result.duplicates == (MAX_REPLIES_PER_PACKET - 1) * sent  # the rest was ignored
    assert result.loss_pct == 0.0
