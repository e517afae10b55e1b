"""A user-space UDP impairment relay: the ground truth against which probe accuracy is measured.

The kernel here has no netem, so delay, jitter and loss are applied by this relay. It sits between
one probe client and a UDP reflector (or TURN server), in its own process, and logs what it
*actually* did to every datagram: arrival time (kernel receive timestamp), size, first bytes,
dropped or not (and why), and the applied delay measured as send time minus arrival time, not the
nominal one. Each client socket gets its own upstream socket, as behind a NAT.

Pairing: a reflector answers every datagram once, immediately, in receive order. So the relay keeps
a FIFO of up-datagram indices in the order it forwarded them; each reply from upstream pops the
head, which tells which client datagram it answers. `compute_truth` turns the log into the figures
a probe should report.

A blackout (`Profile.blackout_at_s`, `blackout_s`) drops every datagram, both ways, that arrives
within [first + at, first + at + duration), where first is the arrival of the relay's first datagram.

For media relayed through TURN (the relay in front of a TURN server's UDP port), the truth per RTP
stream comes from the same log: tests/media_truth.py.

Run `python -m tests.harness.impairment --upstream 127.0.0.1:PORT --profile 60ms-3pct --log relay.json`;
it prints `relay 127.0.0.1:PORT`, relays until SIGTERM/SIGINT, then writes the log and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import json
import os
import queue
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

MAX_DATAGRAM_BYTES = 65535
MAX_LOG_ENTRIES = 1_000_000
MAX_HEAD_BYTES = 64
MAX_CLIENTS = 16
UP, DOWN = "up", "down"
SPIN_NS = 400_000  # wake this early from the timed wait, then spin: Condition.wait overshoots ~0.2 ms
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; not exported by Python 3.11
_TIMESPEC = struct.Struct("@qq")
REPO_ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class Impairment:
    """What one direction does to datagrams."""

    delay_ms: float = 0.0
    """Base one-way delay added by the relay."""
    jitter_ms: float = 0.0
    """Uniform jitter: the delay is delay_ms + U(-jitter_ms, +jitter_ms), floored at 0."""
    loss_pct: float = 0.0
    """Long-run loss rate of this direction."""
    loss_model: str = "bernoulli"
    """'bernoulli' (independent) or 'burst' (Gilbert-Elliott, loss only in the bad state)."""
    burst_len_pkts: float = 1.0
    """Mean loss-burst length for the 'burst' model."""

    def __post_init__(self) -> None:
        if not 0 <= self.delay_ms <= 60_000 or not 0 <= self.jitter_ms <= 60_000:
            raise ValueError("delay_ms and jitter_ms must be within 0..60000")
        if not 0 <= self.loss_pct < 100:
            raise ValueError("loss_pct must be within 0..<100")
        if self.loss_model not in ("bernoulli", "burst"):
            raise ValueError(f"loss_model must be 'bernoulli' or 'burst', not {self.loss_model!r}")
        if self.burst_len_pkts < 1:
            raise ValueError("burst_len_pkts must be >= 1")


@dataclass(frozen=True)
class Profile:
    """A named pair of impairments, up = client to reflector, down = reflector to client."""

    name: str
    up: Impairment
    down: Impairment
    blackout_at_s: float = 0.0
    """Start of the blackout, seconds after the relay's first datagram arrived."""
    blackout_s: float = 0.0
    """Length of the blackout, both directions; 0 = none."""

    def __post_init__(self) -> None:
        if not 0 <= self.blackout_at_s <= 86_400 or not 0 <= self.blackout_s <= 86_400:
            raise ValueError("blackout_at_s and blackout_s must be within 0..86400")

    @classmethod
    def round_trip(cls, name: str, rtt_ms: float, jitter_ms: float, loss_pct: float,
                   loss_model: str = "bernoulli", burst_len_pkts: float = 1.0) -> Profile:
        """Split a round-trip description evenly: half the delay and jitter each way, and a
        per-direction loss p_dir with 1 - (1 - p_dir)^2 = loss_pct."""
        p_dir = 100 * (1 - (1 - loss_pct / 100) ** 0.5)
        one_way = Impairment(rtt_ms / 2, jitter_ms / 2, p_dir, loss_model, burst_len_pkts)
        return cls(name, one_way, one_way)


PROFILES: dict[str, Profile] = {
    p.name: p for p in (
        Profile.round_trip("clean", 0, 0, 0),
        Profile.round_trip("20ms-1pct", 20, 5, 1),
        Profile.round_trip("60ms-3pct", 60, 20, 3),
        Profile.round_trip("300ms", 300, 10, 0),
        Profile.round_trip("50ms-jitter60", 50, 60, 0),
        Profile.round_trip("30ms-8pct", 30, 5, 8),
        Profile.round_trip("150ms-5pct-burst3", 150, 50, 5, "burst", 3),
        Profile("asym-up5pct-down0.5pct", Impairment(10, 2, 5), Impairment(70, 15, 0.5)),
        Profile("asym-jitter-up15-down2", Impairment(40, 15, 0), Impairment(10, 2, 0)),
    )
}
"""The accuracy matrix (issue 8): clean, low and high delay, high jitter, random and bursty loss,
asymmetric loss and jitter (up ±2, down ±15 ms), and jitter asymmetric the other way round (up ±15,
down ±2 ms), so that per-direction jitter swapped between up and down cannot pass (issue 12)."""


class Impairer:
    """Decides drop and nominal delay for each datagram of one direction, in arrival order.

    Every decision draws exactly two numbers from the direction's own generator, so decision k
    depends only on the seed, the direction and k: reproducible whatever the other direction does.
    """

    def __init__(self, impairment: Impairment, seed: int, direction: str) -> None:
        self.impairment = impairment
        self._rng = random.Random(f"netcheck-relay:{seed}:{direction}")
        p = impairment.loss_pct / 100
        if impairment.loss_model == "burst":
            # Gilbert-Elliott with loss only in the bad state: mean stay in bad = 1/p_bg packets,
            # stationary P(bad) = p_gb / (p_gb + p_bg) = p.
            self._p_bg = 1 / impairment.burst_len_pkts
            self._p_gb = p * self._p_bg / (1 - p) if p < 1 else 1.0
            self._bad = self._rng.random() < p
        self._p = p

    def decide(self) -> tuple[bool, int]:
        """(dropped, nominal delay in ns) for the next datagram."""
        u_loss, u_delay = self._rng.random(), self._rng.random()
        if self.impairment.loss_model == "burst":
            dropped = self._bad
            self._bad = u_loss >= self._p_bg if self._bad else u_loss < self._p_gb
        else:
            dropped = u_loss < self._p
        imp = self.impairment
        delay_ms = max(0.0, imp.delay_ms + (2 * u_delay - 1) * imp.jitter_ms)
        return dropped, round(delay_ms * 1e6)


class _Flow:
    """One client address and the upstream socket that carries its datagrams, as a NAT would."""

    def __init__(self, number: int, sock: socket.socket) -> None:
        self.number, self.sock = number, sock
        self.client: tuple | None = None


class Relay:
    """The relay itself: receiver threads (the listening socket, and one upstream socket per client
    address), and one precise sender thread; no event loop.

    Each client address gets its own upstream socket, so several client sockets (a WebRTC peer
    gathers one TURN allocation per transceiver before BUNDLE prunes them) each get their replies.
    Loss and delay decisions are per direction, across all clients, in arrival order.
    """

    def __init__(self, upstream: tuple[str, int], profile: Profile, seed: int,
                 listen: tuple[str, int] = ("127.0.0.1", 0), head_bytes: int = 16,
                 max_log_entries: int = MAX_LOG_ENTRIES, max_clients: int = MAX_CLIENTS) -> None:
        if not 1 <= head_bytes <= MAX_HEAD_BYTES:
            raise ValueError(f"head_bytes must be within 1..{MAX_HEAD_BYTES}")
        self.upstream, self.profile, self.seed = upstream, profile, seed
        self.head_bytes, self.max_log_entries = head_bytes, max_log_entries
        self.max_clients = max_clients
        """An agent opens a new socket per window: long agent runs need more than MAX_CLIENTS."""
        self._impairers = {UP: Impairer(profile.up, seed, UP), DOWN: Impairer(profile.down, seed, DOWN)}
        self._counts = {UP: 0, DOWN: 0}
        self._first_ns: int | None = None
        self._fifo: deque[int] = deque()  # up indices in forwarding order, awaiting their reply
        self._log: list[dict] = []
        self._unlogged = 0
        self._heap: list = []
        self._tiebreak = itertools.count()
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._listen_sock = _udp_socket(listen)
        self._flows = [_Flow(0, self._upstream_socket())]  # flow 0 waits for the first client
        self._flow_by_client: dict[tuple, _Flow] = {}
        self._address = self._listen_sock.getsockname()[:2]
        self._threads = [
            threading.Thread(target=self._receive_loop, args=(self._listen_sock, UP), daemon=True),
            threading.Thread(target=self._receive_loop, args=(self._flows[0].sock, DOWN, self._flows[0]), daemon=True),
            threading.Thread(target=self._send_loop, daemon=True),
        ]
        self.started_ns = 0

    def _upstream_socket(self) -> socket.socket:
        sock = _udp_socket(("127.0.0.1" if self.upstream[0].startswith("127.") else "", 0))
        sock.connect(self.upstream)
        return sock

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    def set_profile(self, profile: Profile) -> None:
        """Change the impairment from the next datagram on (a network getting worse mid-session).

        The new decisions come from generators seeded with the seed and the profile's name, so a
        run stays reproducible; blackouts keep the first datagram as their origin.
        """
        with self._cond:
            self.profile = profile
            self._impairers = {direction: Impairer(getattr(profile, direction), self.seed, f"{direction}:{profile.name}")
                               for direction in (UP, DOWN)}

    def start(self) -> Relay:
        self.started_ns = time.monotonic_ns()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> dict:
        """Stop relaying and return the log (see `log_document`)."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        with self._cond:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)
        self._listen_sock.close()
        for flow in self._flows:
            flow.sock.close()
        return self.log_document()

    def log_document(self) -> dict:
        sent = [e for e in self._log if e["sent"]]
        errors_us = sorted(e["sched_error_ns"] / 1e3 for e in sent)
        return {
            "clock": "CLOCK_MONOTONIC ns; arrival from the kernel receive timestamp",
            "seed": self.seed,
            "profile": asdict(self.profile),
            "listen": list(self.address),
            "upstream": list(self.upstream),
            "clients": [list(flow.client) for flow in self._flows if flow.client is not None],
            "started_ns": self.started_ns,
            "first_datagram_ns": self._first_ns,
            "blackout": self._blackout_window(),
            "truncated": self._unlogged > 0,
            "unlogged": self._unlogged,
            "scheduling_error_us": _summary(errors_us),
            "datagrams": self._log,
        }

    def _blackout_window(self) -> dict | None:
        """{start_ns, end_ns} on the arrival clock, once the first datagram fixed the origin."""
        if self.profile.blackout_s <= 0 or self._first_ns is None:
            return None
        start_ns = self._first_ns + round(self.profile.blackout_at_s * 1e9)
        return {"start_ns": start_ns, "end_ns": start_ns + round(self.profile.blackout_s * 1e9)}

    def _receive_loop(self, sock: socket.socket, direction: str, flow: _Flow | None = None) -> None:
        sock.settimeout(0.05)
        ancillary = socket.CMSG_SPACE(_TIMESPEC.size)
        while not self._stopping.is_set():
            try:
                data, ancdata, _flags, addr = sock.recvmsg(MAX_DATAGRAM_BYTES, ancillary)
            except (TimeoutError, socket.timeout, ConnectionRefusedError):
                continue  # a refused send to a reflector that is gone surfaces here; keep going
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            self._on_datagram(direction, data, addr, _arrival_ns(ancdata), flow)

    def _flow_for(self, client: tuple) -> _Flow | None:
        """The flow of a client address, made on its first datagram; None past MAX_CLIENTS."""
        flow = self._flow_by_client.get(client)
        if flow is not None:
            return flow
        if self._flows[0].client is None:
            flow = self._flows[0]
        elif len(self._flows) >= self.max_clients or self._stopping.is_set():
            return None
        else:
            flow = _Flow(len(self._flows), self._upstream_socket())
            self._flows.append(flow)
            thread = threading.Thread(target=self._receive_loop, args=(flow.sock, DOWN, flow), daemon=True)
            self._threads.append(thread)
            thread.start()
        flow.client = client
        self._flow_by_client[client] = flow
        return flow

    def _on_datagram(self, direction: str, data: bytes, addr: tuple, arrival_ns: int,
                     flow: _Flow | None = None) -> None:
        with self._cond:
            if direction == UP:
                flow = self._flow_for(addr)
            if self._first_ns is None:
                self._first_ns = arrival_ns
            index = self._counts[direction]
            self._counts[direction] += 1
            # always decide, so that decision k stays a function of seed, direction and k only
            dropped, nominal_ns = self._impairers[direction].decide()
            reason = "loss" if dropped else None
            blackout = self._blackout_window()
            if blackout and blackout["start_ns"] <= arrival_ns < blackout["end_ns"]:
                dropped, reason = True, "blackout"
            entry = {
                "dir": direction, "index": index, "arrival_ns": arrival_ns, "size": len(data),
                "head": data[: self.head_bytes].hex(), "dropped": dropped, "reason": reason, "sent": False,
                "delay_ns": None, "nominal_delay_ns": nominal_ns, "sched_error_ns": None,
                "flow": flow.number if flow else None,
            }
            if direction == DOWN:
                entry["pair"] = self._fifo.popleft() if self._fifo else None
            if (flow is None or flow.client is None) and not dropped:
                dropped = entry["dropped"] = True
                entry["reason"] = "no_client" if direction == DOWN else "too_many_clients"
            if len(self._log) < self.max_log_entries:
                self._log.append(entry)
            else:
                self._unlogged += 1
            if not dropped:
                target_ns = arrival_ns + nominal_ns
                heapq.heappush(self._heap, (target_ns, next(self._tiebreak), entry, data, flow))
                self._cond.notify()

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping.is_set():
                        return  # whatever is still queued stays "sent": False in the log
                    if self._heap:
                        wait_ns = self._heap[0][0] - time.monotonic_ns() - SPIN_NS
                        if wait_ns <= 0:
                            target_ns, _, entry, data, flow = heapq.heappop(self._heap)
                            break
                        self._cond.wait(wait_ns / 1e9)
                    else:
                        self._cond.wait(0.1)
            while time.monotonic_ns() < target_ns:
                time.sleep(0)  # yields the GIL so the receivers are not held up by the spin
            self._forward(entry, data, flow, target_ns)

    def _forward(self, entry: dict, data: bytes, flow: _Flow, target_ns: int) -> None:
        upward = entry["dir"] == UP
        if upward:
            self._fifo.append(entry["index"])  # before sending: the reply may come back at once
        sent_ns = time.monotonic_ns()
        try:
            if upward:
                flow.sock.send(data)
            else:
                self._listen_sock.sendto(data, flow.client)
        except OSError as exc:
            if upward:
                self._fifo.pop()
            entry["send_error"] = type(exc).__name__
            return
        entry.update(sent=True, delay_ns=sent_ns - entry["arrival_ns"], sched_error_ns=sent_ns - target_ns)


def _udp_socket(address: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        pass  # no kernel timestamps: _arrival_ns falls back to the time of the recvmsg return
    sock.bind(address)
    return sock


def _arrival_ns(ancdata: list) -> int:
    """Kernel receive time on CLOCK_MONOTONIC (the kernel stamps CLOCK_REALTIME; convert)."""
    mono_now, real_now = time.monotonic_ns(), time.time_ns()
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(payload)
            return min(mono_now, sec * 1_000_000_000 + nsec - (real_now - mono_now))
    return mono_now


def _summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return {"n": len(values), "mean": statistics.fmean(values), "p50": pick(0.5), "p99": pick(0.99),
            "min": values[0], "max": values[-1]}


# ---------------------------------------------------------------------------------------------
# Truth: what a perfect probe would report, from the relay's own log.


@dataclass(frozen=True)
class Truth:
    """Per-probe-packet ground truth; loss percentages as irtt and netcheck define them."""

    probes_sent: int
    """Probe packets the client sent (seen by the relay), handshakes and stats excluded."""
    up_dropped: int
    reached_reflector: int
    down_dropped: int
    round_tripped: int
    unanswered: int
    """Forwarded to the reflector but no reply paired with it; 0 unless the reflector drops."""
    not_forwarded: int
    """Still queued in the relay when it stopped; 0 when the probe had finished."""
    pair_mismatches: int
    """Replies whose bytes contradict the FIFO pairing (only checked when a matcher is given)."""
    rtt_mean_ms: float | None
    rtt_min_ms: float | None
    rtt_max_ms: float | None
    jitter_ms: float | None
    """Mean |rtt_i - rtt_(i-1)| over consecutive probes that both round-tripped (RFC 3393 IPDV)."""
    jitter_up_ms: float | None
    """The same over the relay's up delays (client → reflector) of those pairs: one-way IPDV."""
    jitter_down_ms: float | None
    """The same over the relay's down delays (reflector → client, the reply's delay)."""
    loss_pct: float
    loss_up_pct: float
    loss_down_pct: float


def probe_outcomes(log: dict, is_probe_packet: Callable[[bytes], bool],
                   same_exchange: Callable[[bytes, bytes], bool] | None = None) -> list[dict]:
    """One record per client probe packet, in send order: what happened to it and its RTT (ms).

    `outcome` is one of up_dropped, not_forwarded, unanswered, down_dropped, round_tripped; a
    round-tripped record also has the delay the relay gave it each way (`up_ms`, `down_ms`).
    """
    if log.get("truncated"):
        raise ValueError("relay log is truncated; no truth can be computed from it")
    ups = sorted((e for e in log["datagrams"] if e["dir"] == UP), key=lambda e: e["index"])
    replies = {e["pair"]: e for e in log["datagrams"] if e["dir"] == DOWN and e.get("pair") is not None}
    records = []
    for up in ups:
        if not is_probe_packet(bytes.fromhex(up["head"])):
            continue
        down = replies.get(up["index"])
        record = {"index": up["index"], "rtt_ms": None, "up_ms": None, "down_ms": None, "pair_ok": True}
        if up["dropped"]:
            record["outcome"] = "up_dropped"
        elif not up["sent"]:
            record["outcome"] = "not_forwarded"
        elif down is None:
            record["outcome"] = "unanswered"
        else:
            if same_exchange is not None:
                record["pair_ok"] = same_exchange(bytes.fromhex(up["head"]), bytes.fromhex(down["head"]))
            if down["dropped"] or not down["sent"]:
                record["outcome"] = "down_dropped"
            else:
                record["outcome"] = "round_tripped"
                record["rtt_ms"] = (up["delay_ns"] + down["delay_ns"]) / 1e6
                record["up_ms"], record["down_ms"] = up["delay_ns"] / 1e6, down["delay_ns"] / 1e6
        records.append(record)
    return records


def compute_truth(log: dict, is_probe_packet: Callable[[bytes], bool],
                  same_exchange: Callable[[bytes, bytes], bool] | None = None) -> Truth:
    """Ground-truth figures for the probe packets in `log` (a relay log document)."""
    records = probe_outcomes(log, is_probe_packet, same_exchange)
    count = lambda outcome: sum(r["outcome"] == outcome for r in records)  # noqa: E731
    rtts = [r["rtt_ms"] for r in records]
    got = [r for r in rtts if r is not None]
    ipdv = _ipdv_mean([r["rtt_ms"] for r in records])
    sent, up_dropped, down_dropped = len(records), count("up_dropped"), count("down_dropped")
    reached = sent - up_dropped - count("not_forwarded")
    return Truth(
        probes_sent=sent, up_dropped=up_dropped, reached_reflector=reached, down_dropped=down_dropped,
        round_tripped=len(got), unanswered=count("unanswered"), not_forwarded=count("not_forwarded"),
        pair_mismatches=sum(not r["pair_ok"] for r in records),
        rtt_mean_ms=statistics.fmean(got) if got else None,
        rtt_min_ms=min(got, default=None), rtt_max_ms=max(got, default=None),
        jitter_ms=ipdv,
        jitter_up_ms=_ipdv_mean([r["up_ms"] for r in records]),
        jitter_down_ms=_ipdv_mean([r["down_ms"] for r in records]),
        loss_pct=100 * (sent - len(got)) / sent if sent else 0.0,
        loss_up_pct=100 * up_dropped / sent if sent else 0.0,
        loss_down_pct=100 * down_dropped / reached if reached else 0.0,
    )


def _ipdv_mean(delays_ms: list[float | None]) -> float | None:
    """Mean |d_i - d_(i-1)| over consecutive probes (send order) that both round-tripped.

    One-way: a probe can only learn a packet's up delay from its reply, so the pairs are those
    whose round trip completed, as for the round-trip IPDV (and as irtt's send/receive IPDV)."""
    deltas = [abs(b - a) for a, b in zip(delays_ms, delays_ms[1:]) if a is not None and b is not None]
    return statistics.fmean(deltas) if deltas else None


def is_netcheck_probe(head: bytes) -> bool:
    """An echo request in netcheck's wire format: "NC", version 1, kind 1 (stats requests excluded)."""
    return len(head) >= 4 and head[:2] == b"NC" and head[2] == 1 and head[3] == 1


def netcheck_same_exchange(up: bytes, down: bytes) -> bool:
    """Same flow_id (bytes 8-16) and, when logged (head_bytes >= 20), the same seq (16-20)."""
    n = min(len(up), len(down), 20)
    return n >= 16 and up[8:n] == down[8:n]


# ---------------------------------------------------------------------------------------------
# Running the relay in its own process (for tests and benchmarks) and from the command line.


def read_line(proc: subprocess.Popen, prefix: str, timeout_s: float) -> str:
    """The first line of `proc`'s stdout starting with `prefix`, within `timeout_s`.

    A thread reads stdout to its end, so a chatty child never blocks on a full pipe, and lines
    already buffered are not missed (select() on a buffered text pipe would miss them).
    """
    lines = _stdout_lines(proc)
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            raise RuntimeError(f"{proc.args[:3]} exited ({proc.poll()}) before printing {prefix!r}")
        if line.startswith(prefix):
            return line.strip()
    raise TimeoutError(f"{proc.args[:3]} printed no {prefix!r} line within {timeout_s} s")


def _stdout_lines(proc: subprocess.Popen) -> queue.Queue:
    lines = getattr(proc, "_impairment_lines", None)
    if lines is None:
        lines = proc._impairment_lines = queue.Queue(maxsize=10_000)  # type: ignore[attr-defined]

        def pump() -> None:
            try:
                for line in proc.stdout:
                    if not lines.full():
                        lines.put_nowait(line)
            except (ValueError, OSError):
                pass  # stdout closed by the owner while we read
            with contextlib.suppress(queue.Full):
                lines.put_nowait(None)

        threading.Thread(target=pump, daemon=True).start()
    return lines


def parse_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


class RelayProcess:
    """`python -m tests.harness.impairment` as a context manager; `stop()` returns its log."""

    def __init__(self, upstream: tuple[str, int], profile: Profile, seed: int, log_path: Path,
                 head_bytes: int = 16) -> None:
        self.log_path = Path(log_path)
        self.args = [sys.executable, "-m", "tests.harness.impairment", "--upstream", f"{upstream[0]}:{upstream[1]}",
                     "--seed", str(seed), "--log", str(self.log_path), "--head-bytes", str(head_bytes),
                     *_profile_args(profile)]
        self.proc: subprocess.Popen | None = None
        self.address: tuple[str, int] | None = None

    def __enter__(self) -> RelayProcess:
        self.proc = subprocess.Popen(self.args, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
        try:
            self.address = parse_hostport(read_line(self.proc, "relay ", 10).split()[1])
        except BaseException:
            self.__exit__()
            raise
        return self

    def stop(self) -> dict:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=15)
        if code != 0:
            raise RuntimeError(f"relay exited {code}")
        return json.loads(self.log_path.read_text())

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()


def _profile_args(profile: Profile) -> list[str]:
    up, down = profile.up, profile.down
    if (up.loss_model, up.burst_len_pkts) != (down.loss_model, down.burst_len_pkts):
        raise ValueError("the command line takes one loss model for both directions")
    return [f"--{name}={value!r}" for name, value in (
        ("up-delay-ms", up.delay_ms), ("up-jitter-ms", up.jitter_ms), ("up-loss-pct", up.loss_pct),
        ("down-delay-ms", down.delay_ms), ("down-jitter-ms", down.jitter_ms),
        ("down-loss-pct", down.loss_pct), ("burst-len-pkts", up.burst_len_pkts))
    ] + [f"--loss-model={up.loss_model}", f"--name={profile.name}",
         f"--blackout-at-s={profile.blackout_at_s!r}", f"--blackout-s={profile.blackout_s!r}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.impairment", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", type=parse_hostport)
    parser.add_argument("--upstream", required=True, type=parse_hostport)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", choices=sorted(PROFILES), help="preset; overrides the per-direction flags")
    parser.add_argument("--name", default="custom")
    for direction in (UP, DOWN):
        parser.add_argument(f"--{direction}-delay-ms", type=float, default=0.0)
        parser.add_argument(f"--{direction}-jitter-ms", type=float, default=0.0)
        parser.add_argument(f"--{direction}-loss-pct", type=float, default=0.0)
    parser.add_argument("--loss-model", choices=("bernoulli", "burst"), default="bernoulli")
    parser.add_argument("--burst-len-pkts", type=float, default=1.0)
    parser.add_argument("--blackout-at-s", type=float, default=0.0,
                        help="start of a blackout, seconds after the first datagram (also with --profile)")
    parser.add_argument("--blackout-s", type=float, default=0.0,
                        help="blackout length: every datagram, both ways, is dropped; 0 = none")
    parser.add_argument("--head-bytes", type=int, default=16, help="leading bytes of each datagram to log")
    parser.add_argument("--log", type=Path, required=True, help="where to write the JSON log on exit")
    args = parser.parse_args(argv)
    try:
        if args.profile:
            profile = PROFILES[args.profile]
        else:
            side = lambda d: Impairment(  # noqa: E731
                getattr(args, f"{d}_delay_ms"), getattr(args, f"{d}_jitter_ms"), getattr(args, f"{d}_loss_pct"),
                args.loss_model, args.burst_len_pkts)
            profile = Profile(args.name, side(UP), side(DOWN))
        profile = replace(profile, blackout_at_s=args.blackout_at_s, blackout_s=args.blackout_s)
        relay = Relay(args.upstream, profile, args.seed, args.listen, args.head_bytes)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    relay.start()
    host, port = relay.address
    print(f"relay {host}:{port}", flush=True)
    while not stop.wait(0.2):
        pass
    log = relay.stop()
    tmp = args.log.with_name(args.log.name + ".tmp")
    tmp.write_text(json.dumps(log))
    os.replace(tmp, args.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
