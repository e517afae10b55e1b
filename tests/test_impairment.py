"""The impairment relay itself: its decisions, its truth arithmetic, and, live on loopback, that
what it logs is what a client actually experiences."""

from __future__ import annotations

import socket
import statistics
import struct
import threading
import time

import pytest

from tests.harness.impairment import (
    PROFILES, UP, Impairer, Impairment, Profile, Relay, RelayProcess, compute_truth, is_netcheck_probe,
    netcheck_same_exchange, probe_outcomes,
)
from tests.harness.media_truth import RtpHeader, classify_media_datagram, classify_payload, media_truth, parse_rtp, turn_payload
from tests.harness.irtt_runner import irtt_same_exchange, is_irtt_probe

SEQ = struct.Struct("!4sI")  # test packets: b"TEST" + seq


def decisions(imp: Impairment, seed: int, direction: str, n: int) -> list[tuple[bool, int]]:
    impairer = Impairer(imp, seed, direction)
    return [impairer.decide() for _ in range(n)]


def loss_bursts(dropped: list[bool]) -> list[int]:
    bursts, run = [], 0
    for d in dropped + [False]:
        if d:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    return bursts


# --- decisions ---------------------------------------------------------------------------------


def test_round_trip_profile_splits_delay_jitter_and_loss_evenly():
    p = Profile.round_trip("x", rtt_ms=60, jitter_ms=20, loss_pct=3)
    assert p.up == p.down
    assert (p.up.delay_ms, p.up.jitter_ms) == (30, 10)
    assert 1 - (1 - p.up.loss_pct / 100) ** 2 == pytest.approx(0.03)


@pytest.mark.parametrize("bad", [
    dict(loss_pct=100), dict(loss_pct=-1), dict(delay_ms=-1), dict(loss_model="gilbert"), dict(burst_len_pkts=0.5),
])
def test_impairment_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        Impairment(**bad)


def test_delay_is_base_plus_bounded_uniform_jitter_floored_at_zero():
    delays = [d for _, d in decisions(Impairment(10, 2.5), 1, UP, 20_000)]
    assert min(delays) >= 7_500_000 and max(delays) <= 12_500_000
    assert statistics.fmean(delays) == pytest.approx(10e6, rel=0.01)
    assert statistics.pstdev(delays) == pytest.approx(5e6 / 12 ** 0.5, rel=0.03)  # uniform on 5 ms
    assert min(d for _, d in decisions(Impairment(1, 5), 1, UP, 1000)) == 0


def test_bernoulli_loss_rate():
    dropped = [d for d, _ in decisions(Impairment(loss_pct=3), 2, UP, 100_000)]
    assert statistics.fmean(dropped) == pytest.approx(0.03, abs=0.003)
    assert statistics.fmean(loss_bursts(dropped)) < 1.1


def test_burst_loss_rate_and_mean_burst_length():
    dropped = [d for d, _ in decisions(Impairment(loss_pct=5, loss_model="burst", burst_len_pkts=3), 3, UP, 200_000)]
    assert statistics.fmean(dropped) == pytest.approx(0.05, abs=0.005)
    assert statistics.fmean(loss_bursts(dropped)) == pytest.approx(3, rel=0.1)


def test_decisions_are_reproducible_per_seed_and_direction():
    imp = PROFILES["60ms-3pct"].up
    assert decisions(imp, 5, UP, 500) == decisions(imp, 5, UP, 500)
    assert decisions(imp, 5, UP, 500) != decisions(imp, 6, UP, 500)
    assert decisions(imp, 5, UP, 500) != decisions(imp, 5, "down", 500)


# --- truth arithmetic on a hand-made log ---------------------------------------------------------


def _up(i, head, dropped=False, delay_ms=None):
    sent = not dropped and delay_ms is not None
    return {"dir": "up", "index": i, "head": head.hex(), "dropped": dropped, "sent": sent,
            "delay_ns": round(delay_ms * 1e6) if sent else None}


def _down(i, pair, head, dropped=False, delay_ms=None):
    return {"dir": "down", "index": i, "pair": pair, "head": head.hex(), "dropped": dropped,
            "sent": not dropped, "delay_ns": None if dropped else round(delay_ms * 1e6)}


def nc(kind: int, seq: int) -> bytes:
    return b"NC" + bytes([1, kind, 0, 0, 0, 0]) + (7).to_bytes(8, "big") + seq.to_bytes(4, "big")


def test_truth_by_hand():
    log = {"datagrams": [
        _up(0, nc(1, 0), delay_ms=10), _up(1, nc(1, 1), delay_ms=12), _up(2, nc(1, 2), dropped=True),
        _up(3, nc(1, 3), delay_ms=9), _up(4, nc(1, 4), delay_ms=10), _up(5, nc(3, 0), delay_ms=10),
        _up(6, nc(1, 5), delay_ms=10),
        _down(0, 0, nc(2, 0), delay_ms=10),   # rtt 20
        _down(1, 1, nc(2, 1), delay_ms=11),   # rtt 23
        _down(2, 3, nc(2, 3), dropped=True),
        _down(3, 4, nc(2, 4), delay_ms=16),   # rtt 26
        _down(4, 5, nc(4, 0), delay_ms=1),    # the stats reply: not a probe
        # probe 5 (up index 6) was forwarded but never answered
    ]}
    t = compute_truth(log, is_netcheck_probe, netcheck_same_exchange)
    assert (t.probes_sent, t.up_dropped, t.reached_reflector, t.down_dropped, t.round_tripped) == (6, 1, 5, 1, 3)
    assert (t.unanswered, t.not_forwarded, t.pair_mismatches) == (1, 0, 0)
    assert t.rtt_mean_ms == pytest.approx((20 + 23 + 26) / 3)
    assert t.jitter_ms == pytest.approx(3.0)  # only probes 0 and 1 are consecutive round trips
    assert t.loss_up_pct == pytest.approx(100 / 6)
    assert t.loss_down_pct == pytest.approx(100 / 5)
    assert t.loss_pct == pytest.approx(300 / 6)


def test_truth_flags_replies_that_contradict_the_pairing():
    log = {"datagrams": [_up(0, nc(1, 0), delay_ms=1), _up(1, nc(1, 1), delay_ms=1),
                         _down(0, 0, nc(2, 1), delay_ms=1), _down(1, 1, nc(2, 0), delay_ms=1)]}
    assert compute_truth(log, is_netcheck_probe, netcheck_same_exchange).pair_mismatches == 2
    assert compute_truth(log, is_netcheck_probe).pair_mismatches == 0


def test_probe_filters():
    assert is_netcheck_probe(nc(1, 0)) and not is_netcheck_probe(nc(3, 0)) and not is_netcheck_probe(nc(2, 0))
    assert not is_netcheck_probe(b"NC\x02\x01" + bytes(12))
    irtt = lambda flags: bytes.fromhex("14a75b") + bytes([flags]) + bytes(12)  # noqa: E731
    assert is_irtt_probe(irtt(0)) and is_irtt_probe(irtt(8))  # plain and HMAC echo requests
    assert not any(is_irtt_probe(irtt(f)) for f in (1, 2, 4, 5))  # open, reply, close, open-close
    assert irtt_same_exchange(irtt(0)[:4] + b"T" * 12, irtt(2)[:4] + b"T" * 12)


# --- live, on loopback ---------------------------------------------------------------------------


class Echo:
    """A reflector that answers every datagram once, immediately."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = self.sock.getsockname()
        self.stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopping:
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.sock.sendto(data, addr)

    def close(self) -> None:
        self.stopping = True
        self.thread.join()
        self.sock.close()


@pytest.fixture
def echo():
    server = Echo()
    yield server
    server.close()


def run_client(address, count: int, interval_s: float, extra_head: bytes | None = None) -> dict[int, float]:
    """Send `count` test packets; return the RTT in ms the client itself measured, by seq."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.05)
    sent_ns: dict[int, int] = {}
    rtts: dict[int, float] = {}

    def receive() -> None:
        deadline = time.monotonic() + count * interval_s + 0.3  # delays here are < 30 ms
        while time.monotonic() < deadline and len(rtts) < count:
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            now = time.monotonic_ns()
            if data[:4] == b"TEST":
                seq = SEQ.unpack_from(data)[1]
                rtts[seq] = (now - sent_ns[seq]) / 1e6

    receiver = threading.Thread(target=receive)
    receiver.start()
    start = time.monotonic_ns()
    if extra_head:
        sock.sendto(extra_head, address)
    for seq in range(count):
        time.sleep(max(0, (start + seq * interval_s * 1e9 - time.monotonic_ns()) / 1e9))
        sent_ns[seq] = time.monotonic_ns()
        sock.sendto(SEQ.pack(b"TEST", seq) + bytes(60), address)
    receiver.join()
    sock.close()
    return rtts


def is_test_probe(head: bytes) -> bool:
    return head[:4] == b"TEST"


LIVE = Profile("live", Impairment(5, 2, 10), Impairment(4, 2, 10))


def test_relay_log_matches_what_the_client_sees(echo):
    relay = Relay(echo.address, LIVE, seed=11, head_bytes=8).start()
    client_rtts = run_client(relay.address, count=120, interval_s=0.005, extra_head=b"HELLO")
    log = relay.stop()
    records = probe_outcomes(log, is_test_probe, lambda up, down: up == down)
    truth = compute_truth(log, is_test_probe, lambda up, down: up == down)

    assert truth.probes_sent == 120 and truth.pair_mismatches == 0
    assert truth.unanswered == truth.not_forwarded == 0
    assert 0 < truth.up_dropped < 30 and 0 < truth.down_dropped < 30
    # exactly the packets the relay says round-tripped came back, no more, no fewer
    assert sorted(client_rtts) == [r["index"] - 1 for r in records if r["outcome"] == "round_tripped"]
    # and each took what the relay says it added, plus a little loopback and scheduling overhead
    overhead = [client_rtts[r["index"] - 1] - r["rtt_ms"] for r in records if r["rtt_ms"] is not None]
    assert -0.05 < statistics.median(overhead) < 1.0, overhead
    # the applied (measured) delays follow the nominal ones closely
    sent = [e for e in log["datagrams"] if e["sent"]]
    assert all(e["delay_ns"] - e["nominal_delay_ns"] > -100_000 for e in sent)
    assert log["scheduling_error_us"]["p50"] < 500
    # the non-probe datagram is relayed and logged, but not counted
    assert bytes.fromhex(log["datagrams"][0]["head"]) == b"HELLO" and log["datagrams"][0]["dir"] == UP


def test_same_seed_same_fate_other_seed_other_fate(echo):
    def fates(seed: int) -> list[str]:
        relay = Relay(echo.address, LIVE, seed=seed, head_bytes=8).start()
        run_client(relay.address, count=60, interval_s=0.01)
        return [r["outcome"] for r in probe_outcomes(relay.stop(), is_test_probe)]

    first, again, other = fates(21), fates(21), fates(22)
    assert first == again
    assert first != other


def test_each_client_address_gets_its_own_replies(echo):
    """Like a NAT: two client sockets, each with its own upstream socket, each gets only its echoes."""
    relay = Relay(echo.address, Profile("none", Impairment(), Impairment()), seed=1, head_bytes=8).start()
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for client in clients:
        client.bind(("127.0.0.1", 0))
    addresses = sorted(client.getsockname() for client in clients)
    try:
        for round_ in range(3):
            for number, client in enumerate(clients):
                client.sendto(SEQ.pack(b"TEST", 10 * number + round_), relay.address)
        for number, client in enumerate(clients):
            client.settimeout(2)
            got = sorted(SEQ.unpack_from(client.recv(100))[1] for _ in range(3))
            assert got == [10 * number + r for r in range(3)]
    finally:
        log = relay.stop()
        for client in clients:
            client.close()
    assert sorted(tuple(c) for c in log["clients"]) == addresses
    assert {e["flow"] for e in log["datagrams"]} == {0, 1} and not any(e["dropped"] for e in log["datagrams"])


def test_log_is_bounded(echo):
    relay = Relay(echo.address, Profile("none", Impairment(), Impairment()), seed=1, max_log_entries=10).start()
    run_client(relay.address, count=20, interval_s=0.001)
    log = relay.stop()
    assert len(log["datagrams"]) == 10 and log["truncated"]
    with pytest.raises(ValueError):
        compute_truth(log, is_test_probe)


def test_command_line_relay_prints_its_address_and_writes_its_log_on_sigterm(echo, tmp_path):
    with RelayProcess(echo.address, PROFILES["20ms-1pct"], seed=3, log_path=tmp_path / "relay.json") as relay:
        assert relay.address[0] == "127.0.0.1" and relay.address[1] > 0
        rtts = run_client(relay.address, count=10, interval_s=0.01)
        log = relay.stop()
    assert relay.proc.returncode == 0
    truth = compute_truth(log, is_test_probe)
    assert truth.probes_sent == 10 and truth.round_tripped == len(rtts)
    assert 15 <= truth.rtt_mean_ms <= 26
    assert log["seed"] == 3 and log["profile"]["name"] == "20ms-1pct"


# --- blackout ------------------------------------------------------------------------------------


def test_profile_rejects_a_negative_blackout():
    with pytest.raises(ValueError):
        Profile("x", Impairment(), Impairment(), blackout_at_s=-1, blackout_s=1)
    with pytest.raises(ValueError):
        Profile("x", Impairment(), Impairment(), blackout_at_s=1, blackout_s=-1)


BLACKOUT = Profile("blackout", Impairment(), Impairment(), blackout_at_s=0.1, blackout_s=0.1)


def test_blackout_drops_everything_both_ways_in_its_window_and_nothing_else(echo):
    relay = Relay(echo.address, BLACKOUT, seed=1, head_bytes=8).start()
    client_rtts = run_client(relay.address, count=60, interval_s=0.005)
    log = relay.stop()
    window = log["blackout"]
    assert window["start_ns"] == log["first_datagram_ns"] + 100_000_000
    assert window["end_ns"] - window["start_ns"] == 100_000_000
    inside = [e for e in log["datagrams"] if window["start_ns"] <= e["arrival_ns"] < window["end_ns"]]
    outside = [e for e in log["datagrams"] if e not in inside]
    assert 15 <= sum(e["dir"] == UP for e in inside) <= 25  # ~100 ms of packets 5 ms apart
    assert all(e["dropped"] and e["reason"] == "blackout" for e in inside)
    assert not any(e["dropped"] for e in outside) and all(e["reason"] is None for e in outside)
    records = probe_outcomes(log, is_test_probe)
    assert sorted(client_rtts) == [r["index"] for r in records if r["outcome"] == "round_tripped"]
    assert 15 <= sum(r["outcome"] != "round_tripped" for r in records) <= 25  # ~100 ms of 5 ms packets


def test_blackout_keeps_the_loss_decisions_of_the_other_datagrams(echo):
    lossy = Impairment(loss_pct=20)
    plain = Relay(echo.address, Profile("p", lossy, lossy), seed=4, head_bytes=8).start()
    run_client(plain.address, count=60, interval_s=0.005)
    with_blackout = Relay(echo.address, Profile("b", lossy, lossy, 0.1, 0.1), seed=4, head_bytes=8).start()
    run_client(with_blackout.address, count=60, interval_s=0.005)
    plain_up = [e for e in plain.stop()["datagrams"] if e["dir"] == UP]
    blackout_up = [e for e in with_blackout.stop()["datagrams"] if e["dir"] == UP]
    loss = lambda entries: [(e["index"], e["dropped"]) for e in entries if e["reason"] != "blackout"]  # noqa: E731
    assert loss(blackout_up) == [(e["index"], e["dropped"]) for e in plain_up if e["index"] in
                                 {i for i, _ in loss(blackout_up)}]
    assert {e["reason"] for e in plain_up if e["dropped"]} == {"loss"}


def test_command_line_blackout_flags(echo, tmp_path):
    with RelayProcess(echo.address, BLACKOUT, seed=3, log_path=tmp_path / "relay.json") as relay:
        run_client(relay.address, count=60, interval_s=0.005)
        log = relay.stop()
    assert (log["profile"]["blackout_at_s"], log["profile"]["blackout_s"]) == (0.1, 0.1)
    assert 15 <= sum(e["reason"] == "blackout" for e in log["datagrams"] if e["dir"] == UP) <= 25


# --- media through TURN: the parser and the truth --------------------------------------------------


def rtp(pt: int, seq: int, ssrc: int = 0x11223344, marker: bool = False, size: int = 100) -> bytes:
    header = bytes([0x90, (0x80 if marker else 0) | pt]) + struct.pack("!HII", seq, seq * 960, ssrc)
    return header + bytes(size - len(header))


def rtcp(packet_type: int = 201) -> bytes:
    return bytes([0x81, packet_type]) + struct.pack("!HI", 7, 0x11223344) + bytes(24)


def channel_data(payload: bytes, channel: int = 0x4000) -> bytes:
    return struct.pack("!HH", channel, len(payload)) + payload


def indication(payload: bytes, message_type: int = 0x0017) -> bytes:
    peer = struct.pack("!HHBBH4s", 0x0020, 8, 0, 1, 0x1234, bytes(4))  # XOR-PEER-ADDRESS, IPv4
    data = struct.pack("!HH", 0x0013, len(payload)) + payload + bytes(-len(payload) % 4)
    body = peer + data
    return struct.pack("!HHI", message_type, len(body), 0x2112A442) + bytes(12) + body


STUN_BINDING = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + bytes(12)
ALLOCATE = struct.pack("!HHI", 0x0003, 0, 0x2112A442) + bytes(12)
DTLS_RECORD = bytes([22, 0xFE, 0xFD]) + bytes(10)


def test_turn_payload_unwraps_channel_data_and_indications():
    assert turn_payload(channel_data(b"abc", 0x4001)) == ("channel", b"abc")
    assert turn_payload(channel_data(b"abc", 0x7FFF)) == ("channel", b"abc")
    assert turn_payload(indication(rtp(96, 1))[:64])[0] == "indication"
    assert turn_payload(indication(rtp(96, 1)))[1] == rtp(96, 1)
    assert turn_payload(indication(rtp(96, 1), 0x0016))[1] == rtp(96, 1)  # Send indication
    assert turn_payload(indication(rtp(96, 1))[:32]) == ("truncated", None)  # ends before DATA
    assert turn_payload(indication(rtp(96, 1))[:36]) == ("indication", b"")  # DATA, but no byte of it
    assert turn_payload(ALLOCATE) == ("turn", None)
    assert turn_payload(b"\x80\x60\x00\x01") == ("other", None)


def test_payload_demultiplexing_rfc7983():
    assert classify_payload(STUN_BINDING) == "stun"
    assert classify_payload(DTLS_RECORD) == "dtls"
    assert classify_payload(rtp(96, 1)) == "rtp" and classify_payload(rtp(97, 1, marker=True)) == "rtp"
    for packet_type in (200, 201, 202, 203, 205, 206, 207):
        assert classify_payload(rtcp(packet_type)) == "rtcp"
    assert classify_payload(b"\x80") == "truncated" and classify_payload(b"") == "truncated"
    assert classify_payload(b"\x10abc") == "other"


def test_parse_rtp_reads_the_clear_header():
    assert parse_rtp(rtp(97, 65535, ssrc=7, marker=True)) == RtpHeader(97, True, 65535, 65535 * 960, 7)
    assert parse_rtp(rtp(96, 1)[:11]) is None
    assert parse_rtp(rtcp()) is None


def test_classify_media_datagram():
    assert classify_media_datagram(channel_data(rtp(96, 5))[:32]) == ("rtp", RtpHeader(96, False, 5, 4800, 0x11223344))
    assert classify_media_datagram(channel_data(rtp(96, 5))[:15]) == ("truncated", None)
    assert classify_media_datagram(channel_data(rtcp())) == ("rtcp", None)
    assert classify_media_datagram(channel_data(DTLS_RECORD)) == ("dtls", None)
    assert classify_media_datagram(channel_data(STUN_BINDING)) == ("stun", None)
    assert classify_media_datagram(indication(rtp(97, 9))[:64])[1].payload_type == 97
    assert classify_media_datagram(indication(rtp(97, 9))[:40]) == ("truncated", None)
    assert classify_media_datagram(ALLOCATE) == ("turn", None)


def media_entry(direction: str, index: int, data: bytes, t_ms: float, dropped: bool = False,
                reason: str | None = None) -> dict:
    return {"dir": direction, "index": index, "arrival_ns": round(t_ms * 1e6), "size": len(data),
            "head": data[:32].hex(), "dropped": dropped, "reason": ("loss" if dropped else None) if reason is None
            else reason, "sent": not dropped}


def media_log() -> dict:
    """One second each way: audio PT 96 at 50/s (small), video PT 97 at 30 frames/s of 3 big packets,
    RTCP, DTLS, a binding check and an allocation. Up drops audio 3, 10, 20 and video 0;
    down drops audio 7 and two RTCP."""
    entries = [("up", ALLOCATE, 0, False), ("down", ALLOCATE, 1, False), ("up", channel_data(DTLS_RECORD), 2, False),
               ("up", channel_data(STUN_BINDING), 3, False)]
    for direction in ("up", "down"):
        for seq in range(50):
            lost = seq in ((3, 10, 20) if direction == "up" else (7,))
            entries.append((direction, channel_data(rtp(96, seq, size=120)), 10 + 20 * seq, lost))
        for frame in range(30):
            for k in range(3):
                lost = direction == "up" and frame == 0 and k == 0
                entries.append((direction, channel_data(rtp(97, 3 * frame + k, ssrc=5, size=1100)),
                                10 + 33.3 * frame + k, lost))
        for n in range(4):
            entries.append((direction, channel_data(rtcp()), 100 + 200 * n, direction == "down" and n < 2))
    counters = {"up": 0, "down": 0}
    datagrams = []
    for direction, data, t_ms, lost in sorted(entries, key=lambda e: e[2]):
        datagrams.append(media_entry(direction, counters[direction], data, t_ms, lost))
        counters[direction] += 1
    return {"datagrams": datagrams}


def test_media_truth_counts_rtp_per_payload_type_and_direction():
    truth = media_truth(media_log())
    assert truth["audio_payload_type"] == 96  # inferred: 50/s, small
    up, down = truth["up"], truth["down"]
    assert (up["rtp"][96]["seen"], up["rtp"][96]["dropped"]) == (50, 3)
    assert up["audio"]["loss_pct"] == pytest.approx(6.0) and down["audio"]["loss_pct"] == pytest.approx(2.0)
    assert (up["rtp"][97]["seen"], up["rtp"][97]["dropped"], down["rtp"][97]["dropped"]) == (90, 1, 0)
    assert up["rtp"][96]["rate_pps"] == pytest.approx(50, rel=0.01) and up["rtp"][97]["ssrcs"] == [5]
    assert up["kinds"] == {"rtp": 140, "rtcp": 4, "dtls": 1, "stun": 1, "turn": 1, "truncated": 0, "other": 0}
    assert down["kinds_dropped"]["rtcp"] == 2 and down["kinds"]["turn"] == 1


def test_media_truth_with_an_explicit_audio_payload_type_and_blackout_reasons():
    log = media_log()
    for entry in log["datagrams"]:
        if 500 <= entry["arrival_ns"] / 1e6 < 600:
            entry.update(dropped=True, reason="blackout", sent=False)
    truth = media_truth(log, audio_payload_type=97)
    assert truth["audio_payload_type"] == 97 and truth["up"]["audio"] is truth["up"]["rtp"][97]
    assert truth["down"]["rtp"][96]["blackout_dropped"] == 5  # 510, 530, ..., 590 ms
    assert media_truth(log, audio_payload_type=0)["up"]["audio"] is None


def test_media_truth_infers_nothing_without_an_audio_like_stream():
    log = {"datagrams": [media_entry("up", i, channel_data(rtp(97, i, size=1100)), 10 * i) for i in range(100)]}
    assert media_truth(log)["audio_payload_type"] is None
    with pytest.raises(ValueError):
        media_truth({"truncated": True, "datagrams": []})
