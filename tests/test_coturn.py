"""The coturn fixture works with a real TURN client (aioice): relayed candidates over UDP, TCP and
TLS, none with a wrong password, and nothing left running afterwards."""

from __future__ import annotations

import asyncio
import ssl

import aioice
import aioice.ice
import pytest
from aioice import turn

from tests.harness.coturn import Coturn


@pytest.fixture(scope="module")
def coturn():
    with Coturn(tls=True) as server:
        yield server


@pytest.fixture(autouse=True)
def loopback_host_candidates(monkeypatch):
    """Gather host candidates on 127.0.0.1 only: nothing in these tests may touch another address."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


async def gather(server: Coturn, transport: str, password: str | None = None) -> list[aioice.Candidate]:
    conn = aioice.Connection(ice_controlling=True, turn_server=server.address, turn_username=server.user,
                             turn_password=server.password if password is None else password,
                             turn_transport=transport, use_ipv6=False)
    try:
        await conn.gather_candidates()
        return conn.local_candidates
    finally:
        await conn.close()


def relayed(candidates: list[aioice.Candidate]) -> list[aioice.Candidate]:
    return [c for c in candidates if c.type == "relay"]


def test_urls_and_attributes(coturn):
    assert coturn.host == "127.0.0.1" and coturn.port > 0 and coturn.tls_port not in (None, coturn.port)
    assert coturn.url() == f"turn:127.0.0.1:{coturn.port}?transport=udp"
    assert coturn.url("tcp") == f"turn:127.0.0.1:{coturn.port}?transport=tcp"
    assert coturn.tls_url() == f"turns:127.0.0.1:{coturn.tls_port}?transport=tcp"
    with pytest.raises(ValueError):
        coturn.url("sctp")
    assert "user=" not in " ".join(coturn.proc.args)  # credentials are in the 0600 config file


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_relayed_candidate_from_the_relay_range(coturn, transport):
    candidates = asyncio.run(gather(coturn, transport))
    [relay] = relayed(candidates)
    low, high = coturn.relay_port_range
    assert relay.host == "127.0.0.1" and low <= relay.port <= high and relay.transport == "udp"
    assert all(c.host == "127.0.0.1" for c in candidates)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_wrong_password_gets_no_relayed_candidate(coturn, transport):
    candidates = asyncio.run(gather(coturn, transport, password="not-" + coturn.password))
    assert relayed(candidates) == [] and [c.type for c in candidates] == ["host"]


def test_tls_allocation_with_the_generated_certificate(coturn):
    async def allocate() -> tuple[str, int]:
        context = ssl.create_default_context(cafile=str(coturn.cert_path))
        transport, _protocol = await turn.create_turn_endpoint(
            asyncio.DatagramProtocol, server_addr=(coturn.host, coturn.tls_port), username=coturn.user,
            password=coturn.password, ssl=context, transport="tcp")
        try:
            return transport.get_extra_info("sockname")
        finally:
            transport.close()

    host, port = asyncio.run(allocate())
    assert host == "127.0.0.1" and coturn.relay_port_range[0] <= port <= coturn.relay_port_range[1]


def test_relays_data_between_two_loopback_peers(coturn):
    """An allocation actually carries datagrams to and from a 127.0.0.1 peer (ChannelData)."""

    class Inbox(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.received: asyncio.Queue = asyncio.Queue()
            self.transport = None

        def connection_made(self, transport) -> None:
            self.transport = transport

        def datagram_received(self, data, addr) -> None:
            self.received.put_nowait((data, addr))

    async def exchange() -> tuple[bytes, bytes]:
        loop = asyncio.get_running_loop()
        peer_transport, peer = await loop.create_datagram_endpoint(Inbox, local_addr=("127.0.0.1", 0))
        relay_transport, client = await turn.create_turn_endpoint(
            Inbox, server_addr=coturn.address, username=coturn.user, password=coturn.password)
        try:
            relay_transport.sendto(b"to-peer", peer_transport.get_extra_info("sockname"))
            to_peer, relayed_from = await asyncio.wait_for(peer.received.get(), 5)
            assert relayed_from == relay_transport.get_extra_info("sockname")
            peer_transport.sendto(b"to-client", relayed_from)
            to_client, _ = await asyncio.wait_for(client.received.get(), 5)
            return to_peer, to_client
        finally:
            relay_transport.close()
            peer_transport.close()

    assert asyncio.run(exchange()) == (b"to-peer", b"to-client")


def test_teardown_stops_the_server():
    with Coturn() as server:
        proc = server.proc
        directory = server.directory
        assert proc.poll() is None
    assert proc.poll() is not None and not directory.exists()
