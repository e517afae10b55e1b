"""Self-test of tests/netns.py: the veth carries ICMP, TCP and UDP; the UDP block drops UDP only;
a 1 Mbit/s tbf cap gives about 1 Mbit/s to a TCP transfer, each way."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from tests.harness.netns import ClientNamespace, Tbf

pytestmark = pytest.mark.netns

PORT = 40123  # on the namespace's own /30 addresses, which no other process uses
TRANSFER_BYTES = 300_000  # 2.4 s at 1 Mbit/s


def in_namespace(ns: ClientNamespace, code: str, *args: str, timeout: float = 20.0) -> str:
    """Run a Python snippet inside the namespace; its stdout (it fails the test on a non-zero exit)."""
    done = ns.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


PING = r"""
import os, socket, struct, sys, time
def checksum(data):
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data)//2}H", data))
    total = (total >> 16) + (total & 0xFFFF); total += total >> 16
    return ~total & 0xFFFF
ident = os.getpid() & 0xFFFF
body = struct.pack("!HH", ident, 1) + b"netcheck"
packet = struct.pack("!BBH", 8, 0, checksum(struct.pack("!BBH", 8, 0, 0) + body)) + body
with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
    sock.settimeout(2)
    start = time.monotonic()
    sock.sendto(packet, (sys.argv[1], 0))
    while True:
        reply, source = sock.recvfrom(2048)
        header = (reply[0] & 0x0F) * 4
        kind, _, _, rid, seq = struct.unpack("!BBHHH", reply[header:header + 8])
        if kind == 0 and rid == ident and source[0] == sys.argv[1]:
            print(f"{(time.monotonic() - start) * 1000:.3f}")
            break
"""

TCP_SEND = r"""
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as sock:
    payload = sys.argv[3]  # a byte count, or text to send
    sock.sendall(b"\0" * int(payload) if payload.isdigit() else payload.encode())
"""

TCP_RECEIVE = r"""
import json, socket, sys, time
with socket.create_server((sys.argv[1], int(sys.argv[2]))) as server:
    print("listening", flush=True)
    server.settimeout(10)
    conn, _ = server.accept()
    conn.settimeout(15)
    total, first, last = 0, None, None
    while data := conn.recv(65536):
        now = time.monotonic()
        if first is None:
            first, first_len = now, len(data)
        total, last = total + len(data), now
    print(json.dumps({"bytes": total, "first_len": first_len, "first": first, "last": last}))
"""

UDP_SEND = r"""
import socket, sys, time
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    for i in range(5):
        sock.sendto(b"netcheck %d" % i, (sys.argv[1], int(sys.argv[2])))
        time.sleep(0.02)
"""


class UdpCollector:
    """Bound on the root end before the namespace sends; collects what arrives."""

    def __init__(self, address: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, port))
        self.sock.settimeout(0.1)
        self.received: list[bytes] = []

    def collect(self, for_s: float) -> list[bytes]:
        deadline = time.monotonic() + for_s
        while time.monotonic() < deadline:
            try:
                self.received.append(self.sock.recv(2048))
            except socket.timeout:
                pass
        self.sock.close()
        return self.received


def tcp_to_root(ns: ClientNamespace, payload: str = "hello") -> bytes:
    """The namespace connects to a listener on the root end and sends `payload`; what the root got."""
    with socket.create_server((ns.root_address, PORT)) as server:
        server.settimeout(10)
        sender = ns.popen([sys.executable, "-c", TCP_SEND, ns.root_address, str(PORT), payload])
        conn, peer = server.accept()
        with conn:
            conn.settimeout(5)
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
        assert sender.wait(timeout=10) == 0
        assert peer[0] == ns.address
    return data


def test_icmp_tcp_and_udp_cross_the_veth():
    with ClientNamespace() as ns:
        assert ns.root_address.startswith("10.231.") and ns.address.startswith("10.231.")
        rtt_ms = float(in_namespace(ns, PING, ns.root_address))
        assert 0 < rtt_ms < 100
        assert tcp_to_root(ns) == b"hello"
        # root -> namespace over TCP
        receiver = ns.popen([sys.executable, "-c", TCP_RECEIVE, ns.address, str(PORT)], stdout=subprocess.PIPE, text=True)
        assert receiver.stdout.readline().strip() == "listening"
        with socket.create_connection((ns.address, PORT), timeout=5) as sock:
            sock.sendall(b"x" * 1000)
        assert json.loads(receiver.communicate(timeout=10)[0])["bytes"] == 1000
        # UDP, unblocked
        collector = UdpCollector(ns.root_address, PORT)
        in_namespace(ns, UDP_SEND, ns.root_address, str(PORT))
        assert len(collector.collect(0.5)) == 5
        name, root_dev = ns.name, ns.root_dev
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert subprocess.run(["ip", "link", "show", root_dev], capture_output=True).returncode != 0


def test_the_namespaces_addresses_do_not_change_after_it_is_entered():
    """A program started in the namespace (Chromium) sees no address change: one fails its requests in
    flight (net::ERR_NETWORK_CHANGED; seen as a check page whose last modules did not load)."""
    with ClientNamespace() as ns:
        entered = ns.run(["ip", "-o", "addr", "show", "dev", ns.ns_dev], capture_output=True, text=True).stdout
        assert "inet6 fe80:" in entered and "tentative" not in entered
        time.sleep(2.5)  # IPv6 duplicate detection would end ≈ 1–2 s after the link came up
        later = ns.run(["ip", "-o", "addr", "show", "dev", ns.ns_dev], capture_output=True, text=True).stdout
        assert later == entered


def test_udp_block_drops_udp_but_not_tcp():
    with ClientNamespace(block_udp=True) as ns:
        collector = UdpCollector(ns.root_address, PORT)
        in_namespace(ns, UDP_SEND, ns.root_address, str(PORT))  # sendto succeeds: dropped silently
        assert collector.collect(1.0) == []
        assert ns.dropped_udp_packets() >= 5
        assert tcp_to_root(ns) == b"hello"
        assert float(in_namespace(ns, PING, ns.root_address)) > 0
        ns.unblock_udp()
        collector = UdpCollector(ns.root_address, PORT)
        in_namespace(ns, UDP_SEND, ns.root_address, str(PORT))
        assert len(collector.collect(0.5)) == 5


def rate_kbit(report: dict) -> float:
    """Payload rate from the first received chunk to the last (the first chunk may be a burst)."""
    return (report["bytes"] - report["first_len"]) * 8 / (report["last"] - report["first"]) / 1000


@pytest.mark.parametrize("direction", ["up", "down"])
def test_tbf_cap_of_1_mbit_gives_about_1_mbit(direction):
    cap = Tbf(1000)
    with ClientNamespace(up=cap if direction == "up" else None, down=cap if direction == "down" else None) as ns:
        if direction == "up":  # namespace sends to a receiver on the root end
            receiver = subprocess.Popen([sys.executable, "-c", TCP_RECEIVE, ns.root_address, str(PORT)],
                                        stdout=subprocess.PIPE, text=True)
            assert receiver.stdout.readline().strip() == "listening"
            in_namespace(ns, TCP_SEND, ns.root_address, str(PORT), str(TRANSFER_BYTES))
        else:  # root sends to a receiver in the namespace
            receiver = ns.popen([sys.executable, "-c", TCP_RECEIVE, ns.address, str(PORT)],
                                stdout=subprocess.PIPE, text=True)
            assert receiver.stdout.readline().strip() == "listening"
            with socket.create_connection((ns.address, PORT), timeout=5) as sock:
                sock.sendall(b"\0" * TRANSFER_BYTES)
        report = json.loads(receiver.communicate(timeout=20)[0])
        assert report["bytes"] == TRANSFER_BYTES
        measured = rate_kbit(report)
        print(f"{direction}: {measured:.0f} kbit/s through a 1000 kbit/s tbf")
        assert 700 <= measured <= 1300, f"{measured:.0f} kbit/s\n{ns.qdisc(direction)}"
