"""A reflector that cannot be aimed at a victim (issue 15): it answers only datagrams tagged with a key
bound to their source address, handed out over HTTP (a TCP exchange proves the address)."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

from netcheck.net import wire
from netcheck.model import Status
from netcheck.probes.udp import KEY_EXPIRED_ERROR, UdpProbe, UdpProbeSettings
from netcheck.server.app import start_server
from netcheck.server.reflector import Reflector
from netcheck.server.udp_keys import ClientKeys, full_expiry_min
from netcheck.net.server_info import find_reflector

SECRET = b"s" * 32
VICTIM, ATTACKER = "192.0.2.10", "198.51.100.66"


def keyed_request(key: wire.ClientKey, seq: int = 0, size: int = 64) -> bytes:
    packet = wire.Packet(kind=wire.KIND_ECHO_REQUEST, flow_id=7, seq=seq, size_bytes=size,
                         flags=wire.FLAG_CLIENT_KEY, key_expiry_min=key.expiry_min)
    return wire.encode(packet, key.key)


def issued(keys: ClientKeys, address: str, now_s: float) -> wire.ClientKey:
    key = keys.issue(address, now_s)
    return wire.ClientKey(key.key, key.expiry_min)


def test_a_key_is_answered_only_from_the_address_it_was_given_to() -> None:
    now_s = time.time()
    keys = ClientKeys(SECRET)
    reflector = Reflector(client_keys=keys, open_reflector=False)
    key = issued(keys, VICTIM, now_s)
    request = keyed_request(key)
    reply = reflector.answer(request, VICTIM, time.monotonic_ns(), wall_s=now_s)
    assert reply is not None and len(reply) == len(request)
    assert wire.decode(reply, key.key).kind == wire.KIND_ECHO_REPLY  # the reply is tagged with the same key
    assert reflector.answer(request, ATTACKER, time.monotonic_ns(), wall_s=now_s) is None  # replayed elsewhere
    untagged = wire.encode(wire.Packet(kind=wire.KIND_ECHO_REQUEST, flow_id=7, seq=1, size_bytes=64))
    assert reflector.answer(untagged, ATTACKER, time.monotonic_ns(), wall_s=now_s) is None
    forged = bytearray(request)
    forged[-1] ^= 1
    assert reflector.answer(bytes(forged), VICTIM, time.monotonic_ns(), wall_s=now_s) is None
    assert reflector.counters.dropped_unauthenticated == 3


def test_an_expired_key_is_told_so_to_its_own_address_only() -> None:
    now_s = time.time()
    keys = ClientKeys(SECRET)
    reflector = Reflector(client_keys=keys, open_reflector=False)
    old = issued(keys, VICTIM, now_s - 2 * 3600)
    reply = reflector.answer(keyed_request(old, size=200), VICTIM, time.monotonic_ns(), wall_s=now_s)
    assert reply is not None and len(reply) == 200 and wire.decode(reply, old.key).kind == wire.KIND_KEY_EXPIRED
    assert reflector.answer(keyed_request(old), ATTACKER, time.monotonic_ns(), wall_s=now_s) is None
    assert reflector.counters.key_expired == 1


def test_any_node_with_the_secret_verifies_a_key_and_no_other_does() -> None:
    now_s = time.time()
    key = issued(ClientKeys(SECRET), VICTIM, now_s)
    other_node = Reflector(client_keys=ClientKeys(SECRET), open_reflector=False)
    assert other_node.answer(keyed_request(key), VICTIM, time.monotonic_ns(), wall_s=now_s) is not None
    stranger = Reflector(client_keys=ClientKeys(b"t" * 32), open_reflector=False)
    assert stranger.answer(keyed_request(key), VICTIM, time.monotonic_ns(), wall_s=now_s) is None


@pytest.mark.parametrize("offset_min", [-30, 0, 11, 20_000_000])
def test_the_24_bit_expiry_on_the_wire_comes_back_whole(offset_min: int) -> None:
    now_s = 1_800_000_000.0 + offset_min * 60.0
    expiry_min = int(now_s // 60) + 10
    assert full_expiry_min(expiry_min % wire.KEY_EXPIRY_MODULUS, now_s) == expiry_min


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        ClientKeys(b"short")


# --- against a real server on loopback ---------------------------------------------------------

def count_replies(sock: socket.socket, wait_s: float) -> int:
    sock.settimeout(0.05)
    replies, deadline = 0, time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            sock.recv(2048)
            replies += 1
        except (TimeoutError, socket.timeout):
            continue
    return replies


def test_random_and_replayed_datagrams_from_another_address_get_no_answer() -> None:
    """3,000 random datagrams and 3,000 replays of valid ones from 127.0.0.2 → 0 replies, while the
    address the key was given to (127.0.0.1) is answered."""

    async def scenario() -> tuple[int, int, int]:
        server = await start_server("127.0.0.1", 0, 0, secret=SECRET, open_reflector=False, rate_pps=100_000)
        try:
            reflector = await find_reflector(server.url, None)
            assert reflector.client_key is not None
            valid = [keyed_request(reflector.client_key, seq) for seq in range(100)]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as own:
                own.bind(("127.0.0.1", 0))
                own.connect(("127.0.0.1", server.udp_port))
                for datagram in valid[:10]:
                    own.send(datagram)
                answered_own = await asyncio.to_thread(count_replies, own, 0.5)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                other.bind(("127.0.0.2", 0))
                other.connect(("127.0.0.1", server.udp_port))
                for index in range(3000):
                    other.send(os.urandom(48 + index % 200))
                    other.send(valid[index % len(valid)])
                    if index % 100 == 0:
                        await asyncio.sleep(0.005)  # let the reflector read: we count its answers, not drops
                answered_other = await asyncio.to_thread(count_replies, other, 1.0)
            return answered_own, answered_other, server.reflector.counters.dropped_unauthenticated
        finally:
            await server.close()

    answered_own, answered_other, unauthenticated = asyncio.run(scenario())
    assert answered_own == 10
    assert answered_other == 0
    assert unauthenticated >= 3000  # the replays at least (random bytes are mostly malformed)


def test_a_probe_with_its_key_works_and_an_expired_key_is_a_clear_error() -> None:
    async def scenario():
        server = await start_server("127.0.0.1", 0, 0, secret=SECRET, open_reflector=False)
        try:
            reflector = await find_reflector(server.url, None)
            fresh = await UdpProbe("127.0.0.1", server.udp_port,
                                   UdpProbeSettings(duration_s=0.5, client_key=reflector.client_key)).run()
            expired_key = issued(ClientKeys(SECRET), "127.0.0.1", time.time() - 3600)
            expired = await UdpProbe("127.0.0.1", server.udp_port,
                                     UdpProbeSettings(duration_s=0.5, client_key=expired_key)).run()
            unkeyed = await UdpProbe("127.0.0.1", server.udp_port, UdpProbeSettings(duration_s=0.3)).run()
            return fresh, expired, unkeyed
        finally:
            await server.close()

    fresh, expired, unkeyed = asyncio.run(scenario())
    assert fresh.status == Status.OK and fresh.loss_pct == 0.0
    assert expired.status == Status.ERROR and expired.error == KEY_EXPIRED_ERROR
    assert unkeyed.status == Status.TIMEOUT  # an untagged datagram gets no answer at all


def test_an_agent_whose_key_expired_fetches_a_fresh_one(tmp_path) -> None:
    """The first window is told the key expired (a clear error in its UDP result); the next one
    measures with a fresh key from the server."""

    from netcheck.session.agent import Agent, AgentSettings
    from netcheck.net.server_info import ReflectorAddress
    from netcheck.store.local import LocalStore

    async def scenario():
        server = await start_server("127.0.0.1", 0, 0, secret=SECRET, open_reflector=False)
        windows = []
        try:
            settings = AgentSettings(server_url=server.url, window_s=1.0, av_every_s=0.0, duration_s=2.0)
            with LocalStore(tmp_path / "store.sqlite3") as store:
                agent = Agent(settings, store, None, on_window=windows.append)
                expired_key = issued(ClientKeys(SECRET), "127.0.0.1", time.time() - 3600)
                agent._reflector = ReflectorAddress("127.0.0.1", server.udp_port, expired_key)
                await agent.run(asyncio.Event())
        finally:
            await server.close()
        return [window.measurements["udp"].result for window in windows]

    first, second = asyncio.run(scenario())
    assert first.status == Status.ERROR and first.error == KEY_EXPIRED_ERROR
    assert second.status == Status.OK and second.packets_received == second.packets_sent
