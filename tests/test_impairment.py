"""The impairment relay itself: its decisions, its truth arithmetic, and, live on loopback, that
what it logs is what a client actually experiences."""

from __future__ import annotations

import socket
import statistics
import struct
import threading
import time

import pytest

from tests.impairment import (
    PROFILES, UP, Impairer, Impairment, Profile, Relay, RelayProcess, compute_truth,
    is_netcheck_probe, netcheck_same_exchange, probe_outcomes,
)
from tests.irtt_runner import irtt_same_exchange, is_irtt_probe

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
