"""A UDP key for dual-stack clients (issue 23): the key /v1/info hands out works for UDP from another
address than the HTTP request's (HTTP over IPv6 and UDP over IPv4, a carrier NAT), once the reflector's
cookie proves that address; an address not proven gets the cookie only, never more bytes than it sent."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from functools import partial

import pytest

from netcheck.model import Status
from netcheck.net import stamped, wire
from netcheck.net.server_info import find_reflector
from netcheck.probes import udp
from netcheck.probes.udp import KEY_EXPIRED_ERROR, UdpProbe, UdpProbeSettings
from netcheck.server.app import start_server
from netcheck.server.reflector import Reflector
from netcheck.server.udp_keys import ClientKeys

SECRET = b"r" * 32
CLIENT, ATTACKER = "192.0.2.10", "198.51.100.66"
ROAMING_MIN_BYTES = wire.min_size_bytes(True, True)


def probe_settings(client_key: wire.ClientKey, duration_s: float = 0.5) -> UdpProbeSettings:
    return UdpProbeSettings(interval_ms=20.0, duration_s=duration_s, client_key=client_key)


def test_a_key_issued_over_http_from_127_0_0_1_measures_from_127_0_0_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's socket bound to 127.0.0.2: not the address the key was asked from."""
    monkeypatch.setattr(udp.stamped, "open_endpoint", partial(stamped.open_endpoint, local_addr=("127.0.0.2", 0)))

    async def scenario():
        server = await start_server("127.0.0.1", 0, 0, secret=SECRET, open_reflector=False)
        try:
            reflector = await find_reflector(server.url, None)  # over HTTP from 127.0.0.1
            result = await UdpProbe("127.0.0.1", server.udp_port, probe_settings(reflector.client_key)).run()
            return result, server.reflector.counters
        finally:
            await server.close()

    result, counters = asyncio.run(scenario())
    assert result.status == Status.OK and result.packets_received == result.packets_sent == 25, result
    assert result.loss_up_pct == 0.0  # the proof is a stats request: it counts no packet
    assert counters.challenged == 1  # the proof before the stream, and nothing of the stream


def test_a_second_probe_with_the_same_key_starts_on_the_proven_cookie() -> None:
    """One proof per key, not per probe: a check's loaded-RTT stream starts while the link's queue is
    a second long, where a proof's answer would take that second (a deep-queue check read 570 ms of
    bufferbloat for 1,000)."""

    async def scenario():
        server = await start_server("127.0.0.1", 0, 0, secret=SECRET, open_reflector=False)
        try:
            reflector = await find_reflector(server.url, None)
            first = await UdpProbe("127.0.0.1", server.udp_port, probe_settings(reflector.client_key)).run()
            second = await UdpProbe("127.0.0.1", server.udp_port, probe_settings(reflector.client_key)).run()
            return first, second, server.reflector.counters
        finally:
            await server.close()

    first, second, counters = asyncio.run(scenario())
    assert first.status == second.status == Status.OK and second.packets_received == second.packets_sent == 25
    assert counters.challenged == 1  # the first probe's proof only


def test_http_over_ipv6_and_udp_over_ipv4_is_a_dual_stack_client_that_measures() -> None:
    """The node on `::` (dual-stack UDP): the key asked for over http://[::1], the stream sent to 127.0.0.1."""

    async def scenario():
        server = await start_server("::", 0, 0, secret=SECRET, open_reflector=False)
        try:
            reflector = await find_reflector(f"http://[::1]:{server.http_port}", None)
            over_ipv4 = await UdpProbe("127.0.0.1", server.udp_port, probe_settings(reflector.client_key)).run()
            over_ipv6 = await UdpProbe("::1", server.udp_port, probe_settings(reflector.client_key)).run()
            return over_ipv4, over_ipv6
        finally:
            await server.close()

    over_ipv4, over_ipv6 = asyncio.run(scenario())
    assert over_ipv4.status == Status.OK and over_ipv4.packets_received == over_ipv4.packets_sent, over_ipv4
    assert over_ipv6.status == Status.OK and over_ipv6.packets_received == over_ipv6.packets_sent, over_ipv6


def roaming_request(key: wire.ClientKey, size: int, cookie: bytes = wire.NO_COOKIE, seq: int = 0,
                    kind: int = wire.KIND_ECHO_REQUEST) -> bytes:
    return wire.signing(None, key).request(kind, 9, seq, size, cookie=cookie)


def issued(keys: ClientKeys, now_s: float) -> wire.ClientKey:
    key = keys.issue(CLIENT, now_s)
    return wire.ClientKey(key.key, key.expiry_min, key.key_id, key.roaming_key)


def test_an_unproven_address_gets_the_cookie_only_never_more_bytes_than_it_sent() -> None:
    now_s = time.time()
    keys = ClientKeys(SECRET)
    reflector = Reflector(client_keys=keys, open_reflector=False, rate_pps=1e6, burst_pkts=1e6)
    key = issued(keys, now_s)
    challenge = wire.decode(reflector.answer(roaming_request(key, 160), CLIENT, time.monotonic_ns(), now_s), key.roaming_key)
    assert challenge.kind == wire.KIND_ADDRESS_CHALLENGE and challenge.size_bytes == ROAMING_MIN_BYTES
    proven = reflector.answer(roaming_request(key, 160, challenge.cookie), CLIENT, time.monotonic_ns(), now_s)
    assert proven is not None and len(proven) == 160 and wire.decode(proven, key.roaming_key).kind == wire.KIND_ECHO_REPLY

    sent_bytes = answered_bytes = 0
    for index in range(600):  # a spoofer: no cookie, the client's cookie, a random one; every size
        size = ROAMING_MIN_BYTES + index * 7 % (wire.MAX_PACKET_BYTES - ROAMING_MIN_BYTES + 1)
        cookie = (wire.NO_COOKIE, challenge.cookie, os.urandom(wire.COOKIE_BYTES))[index % 3]
        kind = (wire.KIND_ECHO_REQUEST, wire.KIND_STATS_REQUEST)[index % 2]
        request = roaming_request(key, size, cookie, index, kind)
        reply = reflector.answer(request, ATTACKER, time.monotonic_ns(), now_s)
        assert reply is not None and len(reply) == ROAMING_MIN_BYTES <= len(request)
        assert wire.decode(reply, key.roaming_key).kind == wire.KIND_ADDRESS_CHALLENGE
        sent_bytes, answered_bytes = sent_bytes + len(request), answered_bytes + len(reply)
    assert answered_bytes <= sent_bytes and reflector.flows.count(ATTACKER, 9, 0.0) == 0  # nothing counted either
    assert reflector.counters.challenged == 601


def test_an_expired_roaming_key_is_told_so_in_no_more_bytes_than_came() -> None:
    now_s = time.time()
    keys = ClientKeys(SECRET)
    reflector = Reflector(client_keys=keys, open_reflector=False)
    old = issued(keys, now_s - 2 * 3600)
    reply = reflector.answer(roaming_request(old, 400), ATTACKER, time.monotonic_ns(), now_s)
    assert reply is not None and len(reply) == ROAMING_MIN_BYTES
    assert wire.decode(reply, old.roaming_key).kind == wire.KIND_KEY_EXPIRED


def test_a_probe_with_an_expired_roaming_key_says_so_in_one_sentence() -> None:
    async def scenario():
        server = await start_server("127.0.0.1", 0, 0, secret=SECRET, open_reflector=False)
        try:
            old = issued(ClientKeys(SECRET), time.time() - 3600)
            return await UdpProbe("127.0.0.1", server.udp_port, probe_settings(old, 0.3)).run()
        finally:
            await server.close()

    result = asyncio.run(scenario())
    assert result.status == Status.ERROR and result.error == KEY_EXPIRED_ERROR


def count_bytes(sock: socket.socket, wait_s: float) -> tuple[int, list[bytes]]:
    sock.settimeout(0.05)
    received, replies, deadline = 0, [], time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            data = sock.recv(2048)
        except (TimeoutError, socket.timeout):
            continue
        received += len(data)
        replies.append(data)
    return received, replies


def test_a_real_node_answers_a_spoofed_address_with_fewer_bytes_than_it_was_sent() -> None:
    """127.0.0.2 replays datagrams carrying the cookie 127.0.0.1 proved: only cookies come back."""

    async def scenario() -> tuple[int, int, list[bytes], wire.ClientKey]:
        server = await start_server("127.0.0.1", 0, 0, secret=SECRET, open_reflector=False, rate_pps=100_000)
        try:
            key = (await find_reflector(server.url, None)).client_key
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as own:
                own.bind(("127.0.0.1", 0))
                own.connect(("127.0.0.1", server.udp_port))
                own.send(roaming_request(key, 100))
                _, replies = await asyncio.to_thread(count_bytes, own, 0.3)
            cookie = wire.decode(replies[0], key.roaming_key).cookie
            sent = 0
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                other.bind(("127.0.0.2", 0))
                other.connect(("127.0.0.1", server.udp_port))
                for index in range(300):
                    datagram = roaming_request(key, 200 + index % 1000, cookie, index)
                    sent += other.send(datagram)
                    if index % 50 == 0:
                        await asyncio.sleep(0.005)
                received, replies = await asyncio.to_thread(count_bytes, other, 0.5)
            return sent, received, replies, key
        finally:
            await server.close()

    sent, received, replies, key = asyncio.run(scenario())
    assert replies and received <= sent // 2
    assert {wire.decode(reply, key.roaming_key).kind for reply in replies} == {wire.KIND_ADDRESS_CHALLENGE}
