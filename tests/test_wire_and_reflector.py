"""Wire format round trips, and a reflector that hostile input cannot abuse."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netcheck.net import wire
from netcheck.server.rate import TokenBuckets
from netcheck.server.reflector import FlowTable, Reflector

KEY = b"test-key-0123456789"


def echo_request(seq: int = 0, size: int = 160, flow_id: int = 42, key: bytes | None = None) -> bytes:
    return wire.encode(wire.Packet(kind=wire.KIND_ECHO_REQUEST, flow_id=flow_id, seq=seq, size_bytes=size,
                                   client_send_ns=123), key)


def test_round_trip_with_and_without_hmac() -> None:
    for key in (None, KEY):
        data = echo_request(seq=7, size=160, key=key)
        assert len(data) == 160
        packet = wire.decode(data, key)
        assert (packet.kind, packet.flow_id, packet.seq, packet.client_send_ns) == (wire.KIND_ECHO_REQUEST, 42, 7, 123)


def test_tampered_or_unsigned_packets_are_rejected_when_a_key_is_set() -> None:
    signed = bytearray(echo_request(key=KEY))
    signed[20] ^= 0xFF
    with pytest.raises(wire.WireError):
        wire.decode(bytes(signed), KEY)
    with pytest.raises(wire.WireError):
        wire.decode(echo_request(key=None), KEY)
    with pytest.raises(wire.WireError):
        wire.decode(echo_request(key=b"another key"), KEY)


def test_reflector_answers_with_the_same_size_and_counts_the_flow() -> None:
    reflector = Reflector(open_reflector=True)
    for seq in (0, 1, 1, 3):  # a duplicate of 1 is counted once
        reply = reflector.answer(echo_request(seq=seq), "192.0.2.1", 1_000_000 * (seq + 1))
        assert reply is not None and len(reply) == 160
    assert wire.decode(reply).server_rx_count == 3
    stats_request = wire.encode(wire.Packet(kind=wire.KIND_STATS_REQUEST, flow_id=42, seq=0, size_bytes=64))
    stats_reply = wire.decode(reflector.answer(stats_request, "192.0.2.1", 10_000_000) or b"")
    assert stats_reply.kind == wire.KIND_STATS_REPLY and stats_reply.server_rx_count == 3
    # another source with the same flow id is another flow
    assert wire.decode(reflector.answer(echo_request(seq=0), "192.0.2.2", 11_000_000) or b"").server_rx_count == 1


def test_reflector_drops_replies_oversized_and_unauthenticated_packets() -> None:
    reflector = Reflector(hmac_key=KEY)
    assert reflector.answer(echo_request(key=None), "192.0.2.1", 1) is None
    assert reflector.answer(echo_request(key=KEY), "192.0.2.1", 2) is not None
    reply = reflector.answer(echo_request(key=KEY), "192.0.2.1", 3) or b""
    assert reflector.answer(reply, "192.0.2.1", 4) is None  # a reply is not a request: no ping-pong loops
    assert reflector.answer(b"NC" + b"\x01" * 2000, "192.0.2.1", 5) is None
    assert reflector.counters.dropped_malformed == 2  # a reply, and 2000 bytes
    assert reflector.counters.dropped_unauthenticated == 1  # no tag


def test_rate_limit_per_source() -> None:
    limiter = TokenBuckets(rate_per_s=10.0, burst=5.0)
    allowed = sum(limiter.allow("192.0.2.1", 0.0) for _ in range(20))
    assert allowed == 5  # the burst, then nothing until tokens refill
    assert limiter.allow("192.0.2.2", 0.0)  # other sources are unaffected
    assert limiter.allow("192.0.2.1", 0.1)  # 0.1 s × 10 pps = one token


def test_the_reflectors_rate_limit_takes_an_ipv6_clients_64_as_one_source() -> None:
    """One /64 is one household's (2^64 addresses): a client that rotates through them shares one bucket;
    another /64 has its own, and each address's flow is still counted apart."""
    reflector = Reflector(rate_pps=1.0, burst_pkts=4.0, open_reflector=True)
    same_64 = [f"2001:db8:1:2::{index:x}" for index in range(1, 9)]
    answered = [reflector.answer(echo_request(seq=index), source, 1_000) is not None
                for index, source in enumerate(same_64)]
    assert answered == [True] * 4 + [False] * 4
    assert reflector.answer(echo_request(seq=0), "2001:db8:1:3::1", 1_000) is not None  # another /64
    assert reflector.answer(echo_request(seq=0), "192.0.2.7", 1_000) is not None  # IPv4: the address itself
    assert wire.decode(reflector.answer(echo_request(seq=9), "2001:db8:1:3::2", 1_000) or b"").server_rx_count == 1


def test_rate_limiter_and_flow_table_stay_bounded() -> None:
    limiter = TokenBuckets(rate_per_s=10.0, burst=5.0, max_keys=100)
    for index in range(1000):
        limiter.allow(f"198.51.100.{index}", 0.0)
    assert len(limiter) == 100
    flows = FlowTable(max_flows=50, max_seqs=10)
    for flow_id in range(500):
        flows.record("192.0.2.1", flow_id, 0, 0.0)
    assert len(flows._flows) == 50
    assert [flows.record("192.0.2.1", 1, seq, 1.0) for seq in range(12)][-1] is None


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=1600))
def test_reflector_never_amplifies_random_bytes(data: bytes) -> None:
    reflector = Reflector(rate_pps=1e9, burst_pkts=1e9)
    reply = reflector.answer(data, "192.0.2.1", 1)
    assert reply is None or len(reply) == len(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=wire.HEADER_BYTES - 4, max_size=200))
def test_random_bytes_after_a_valid_prefix_never_crash_or_amplify(tail: bytes) -> None:
    reflector = Reflector(rate_pps=1e9, burst_pkts=1e9)
    data = b"NC\x01\x01" + tail
    reply = reflector.answer(data, "192.0.2.1", 1)
    assert reply is None or len(reply) == len(data)
