"""Reflector capacity: how many probing clients (50 packets/s each) one `netcheck serve` holds on this
machine before its added latency p99 exceeds 1 ms or it drops a packet; irtt's server for comparison.

netcheck: one generator process plays N clients, each its own socket on its own loopback address
(127.0.x.y, so the per-source rate limit treats them as different clients), sending netcheck's
wire format every 20 ms with the clients' phases spread evenly. Receive times are the kernel's
(SO_TIMESTAMPNS), so the generator's own lateness in reading does not count as server latency.
irtt: N `irtt client` processes (Go) against one `irtt server`, same rate, `--local` addresses.
Added latency = RTT p99 at N − RTT p99 with one client. Both servers share the 2 cores with
their load generator, as a clinic's server would with its other work.

    python benchmarks/reflector_capacity.py [--steps 1,50,100,200,300,400] [--seconds 5] [--keyed --skip-irtt]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from netcheck.net import wire  # noqa: E402
from tests.harness.servers import start_serve, stop, subprocess_env  # noqa: E402

INTERVAL_S = 0.020
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("@qq")


def client_address(index: int) -> str:
    return f"127.0.{1 + index // 250}.{2 + index % 250}"


def generate(host: str, port: int, clients: int, seconds: float, secret: bytes | None = None) -> dict:
    """In the generator process: N clients for `seconds`; RTTs from kernel receive timestamps.

    With `secret` (the server's NETCHECK_SECRET) each client signs with the key the server would
    issue to its address (server/udp_keys.py: the same derivation), as real clients do since the
    reflector answers only keyed datagrams; without it the packets are untagged (`--open-reflector`).
    """
    from netcheck.server.udp_keys import ClientKeys

    keys = [ClientKeys(secret).issue(client_address(index), time.time()) for index in range(clients)] if secret else []
    sockets = []
    for index in range(clients):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((client_address(index), 0))
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
        sock.connect((host, port))
        sockets.append(sock)
    by_fd = {sock.fileno(): index for index, sock in enumerate(sockets)}
    poller = select.epoll()
    for sock in sockets:
        poller.register(sock.fileno(), select.EPOLLIN)
    flow_ids = [int.from_bytes(os.urandom(8), "big") for _ in range(clients)]
    rounds = int(seconds / INTERVAL_S)
    send_ns: list[list[int]] = [[0] * rounds for _ in range(clients)]
    rtts_us: list[float] = []
    sent = late_sends = 0
    step_s = INTERVAL_S / clients
    start_s = time.monotonic() + 0.2
    total = rounds * clients
    event = 0
    deadline_s = start_s + rounds * INTERVAL_S + 1.0
    while True:
        now_s = time.monotonic()
        while event < total and start_s + event * step_s <= now_s:
            client, seq = event % clients, event // clients
            if keys:
                packet = wire.encode(wire.Packet(kind=wire.KIND_ECHO_REQUEST, flow_id=flow_ids[client], seq=seq,
                                                 size_bytes=64, flags=wire.FLAG_CLIENT_KEY,
                                                 key_expiry_min=keys[client].expiry_min), keys[client].key)
            else:
                packet = wire.encode(wire.Packet(kind=wire.KIND_ECHO_REQUEST, flow_id=flow_ids[client], seq=seq,
                                                 size_bytes=64))
            send_ns[client][seq] = time.time_ns()
            try:
                sockets[client].send(packet)
                sent += 1
            except BlockingIOError:
                pass
            late_sends += now_s - (start_s + event * step_s) > 0.002
            event += 1
        if event >= total and (now_s > deadline_s or len(rtts_us) >= sent):
            break
        wait_s = max(0.0, min(0.005, start_s + event * step_s - time.monotonic())) if event < total else 0.05
        for fd, _ in poller.poll(wait_s):
            client = by_fd[fd]
            while True:
                try:
                    data, ancillary, _, _ = sockets[client].recvmsg(2048, socket.CMSG_SPACE(TIMESPEC.size))
                except BlockingIOError:
                    break
                try:
                    reply = wire.decode(data)
                except wire.WireError:
                    continue
                arrival_ns = next((seconds_ * 1_000_000_000 + nanos for level, kind, raw in ancillary
                                   if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS
                                   for seconds_, nanos in [TIMESPEC.unpack(raw[:TIMESPEC.size])]), time.time_ns())
                rtts_us.append((arrival_ns - send_ns[client][reply.seq]) / 1000)
    return {"clients": clients, "sent": sent, "received": len(rtts_us), "late_sends": late_sends,
            **percentiles(rtts_us)}


def percentiles(values_us: list[float]) -> dict:
    ordered = sorted(values_us)
    if not ordered:
        return {"p50_us": None, "p99_us": None, "max_us": None}
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_us": pick(0.5), "p99_us": pick(0.99), "max_us": ordered[-1]}


def run_netcheck(steps: list[int], seconds: float, keyed: bool = False) -> list[dict]:
    """`keyed`: the reflector as served to the internet (answers only keyed datagrams), else `--open-reflector`."""
    secret = os.urandom(32).hex()
    if keyed:
        server = start_serve("--rate-limit-pps", "1000", env=subprocess_env(NETCHECK_SECRET=secret))
    else:
        server = start_serve("--rate-limit-pps", "1000", "--open-reflector")  # the generator sends untagged packets
    results = []
    try:
        for clients in steps:
            before = cpu_s(server.process.pid)
            output = subprocess.run([sys.executable, __file__, "--generate", server.udp_host, str(server.udp_port),
                                     str(clients), str(seconds), secret if keyed else ""],
                                    capture_output=True, text=True, check=True)
            result = json.loads(output.stdout)
            result["server_cpu_pct"] = 100 * (cpu_s(server.process.pid) - before) / (seconds + 1.2)
            results.append(result)
    finally:
        stop(server.process)
    return results


def run_irtt(steps: list[int], seconds: float) -> list[dict]:
    irtt = shutil.which("irtt") or "/usr/bin/irtt"
    port = free_udp_port()
    server = subprocess.Popen([irtt, "server", "-b", f"127.0.0.1:{port}", "-i", "0"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    results = []
    try:
        for clients in steps:
            with tempfile.TemporaryDirectory() as tmp:
                before = cpu_s(server.pid)
                processes = [subprocess.Popen([irtt, "client", "-i", "20ms", "-d", f"{seconds:g}s", "-l", "64",
                                               "--wait=1s", "-Q", "-o", f"{tmp}/{index}.json",
                                               f"--local={client_address(index)}", f"127.0.0.1:{port}"],
                                              stderr=subprocess.DEVNULL)
                             for index in range(clients)]
                for process in processes:
                    process.wait(timeout=seconds + 60)
                server_cpu = cpu_s(server.pid) - before
                rtts_us: list[float] = []
                sent = received = failed = 0
                for index in range(clients):
                    output = Path(f"{tmp}/{index}.json")
                    if not output.exists():  # the client could not open its session with the server
                        failed += 1
                        sent += int(seconds / INTERVAL_S)
                        continue
                    document = json.loads(output.read_text())
                    sent += document["stats"]["packets_sent"]
                    received += document["stats"]["packets_received"]
                    rtts_us += [trip["delay"]["rtt"] / 1000 for trip in document["round_trips"]
                                if "rtt" in trip.get("delay", {})]
            results.append({"clients": clients, "sent": sent, "received": received, "failed_to_open": failed,
                            "server_cpu_pct": 100 * server_cpu / seconds, **percentiles(rtts_us)})
    finally:
        server.terminate()
        server.wait()
    return results


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def table(name: str, results: list[dict]) -> str:
    base = results[0]["p99_us"] or 0.0
    lines = [f"{name}:", "", "| clients | packets/s | sent | lost | p50 µs | p99 µs | added p99 µs | server CPU % | ok |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for result in results:
        lost = result["sent"] - result["received"]
        added = (result["p99_us"] or 0.0) - base
        ok = lost == 0 and added <= 1000
        lines.append(f"| {result['clients']} | {result['clients'] * 50} | {result['sent']} | {lost} | "
                     f"{result['p50_us']:.0f} | {result['p99_us']:.0f} | {added:.0f} | {result['server_cpu_pct']:.0f} | "
                     f"{'yes' if ok else 'NO'} |")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--generate"]:
        host, port, clients, seconds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        secret = sys.argv[6].encode() if len(sys.argv) > 6 and sys.argv[6] else None  # as serve reads NETCHECK_SECRET
        print(json.dumps(generate(host, port, clients, seconds, secret)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="1,50,100,200,300,400")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--skip-irtt", action="store_true")
    parser.add_argument("--irtt-max", type=int, default=200,
                        help="irtt runs one client process per client; beyond this they start too slowly")
    parser.add_argument("--keyed", action="store_true",
                        help="the reflector as served to the internet: every client signs with its own key")
    args = parser.parse_args()
    steps = [int(step) for step in args.steps.split(",")]
    name = "netcheck serve (Python asyncio), keyed clients" if args.keyed else "netcheck serve (Python asyncio)"
    print(table(name, run_netcheck(steps, args.seconds, args.keyed)))
    if not args.skip_irtt:
        print()
        print(table("irtt server 0.9.0 (Go), one irtt client process per client",
                    run_irtt([step for step in steps if step <= args.irtt_max], args.seconds)))


if __name__ == "__main__":
    main()
