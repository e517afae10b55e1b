"""irtt as the reference probe: an `irtt server` on a free loopback port, `irtt client` runs, and
its JSON turned into the figures netcheck's UDP probe reports (same names, same units).

irtt's packet format (from its packet.go): 3 magic bytes 14 a7 5b, a flags byte (1 open, 2 reply,
4 close, 8 HMAC), then the 8-byte connection token and, in echo packets, the 4-byte seqno, all
little-endian. The open and close handshakes carry the open/close flags; echo requests carry
neither, nor the reply flag. The server answers every echo request and every open, never a close.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess

from tests.harness.impairment import parse_hostport, read_line

IRTT_MAGIC = bytes.fromhex("14a75b")
_FL_OPEN, _FL_REPLY, _FL_CLOSE = 0x01, 0x02, 0x04


def irtt_available() -> bool:
    return shutil.which("irtt") is not None


def is_irtt_probe(head: bytes) -> bool:
    """An irtt echo request (a data packet), not the open/close handshake nor a reply."""
    return len(head) >= 4 and head[:3] == IRTT_MAGIC and not head[3] & (_FL_OPEN | _FL_REPLY | _FL_CLOSE)


def irtt_same_exchange(up: bytes, down: bytes) -> bool:
    """A reply carries its request's connection token and seqno (bytes 4-16, no HMAC)."""
    return len(up) >= 16 and len(down) >= 16 and up[4:16] == down[4:16]


class IrttServer:
    """`irtt server` bound to 127.0.0.1 on a free port, as a context manager.

    `-i 0` lifts the server's default 10 ms minimum interval: with ±25 ms of jitter, packets sent
    20 ms apart reach it closer together, and it would otherwise drop some (not the relay's loss).
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.address: tuple[str, int] | None = None

    def __enter__(self) -> IrttServer:
        self.proc = subprocess.Popen(["irtt", "server", "-b", "127.0.0.1:0", "-i", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = read_line(self.proc, "[ListenerStart]", 10)
            self.address = parse_hostport(line.rsplit(" ", 1)[1])
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def run_irtt_client(target: tuple[str, int], interval: str = "20ms", duration: str = "3s",
                    length: int = 160, timeout_s: float = 60) -> dict:
    """One `irtt client` run against `target`; its full JSON document."""
    cmd = ["irtt", "client", "-i", interval, "-d", duration, "-l", str(length), "-Q", "-o", "-",
           f"{target[0]}:{target[1]}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"irtt client exited {done.returncode}: {done.stderr.strip()[:500]}")
    return json.loads(done.stdout)


def _percent_or_none(value: float) -> float | None:
    """irtt splits loss with the server's received count, which can lag by one packet (seen: 1 in
    250 short, so 0.4 pp too much upstream); downstream then goes negative and irtt prints it as an
    unsigned wrap-around (7.4e18 %). A percentage outside 0..100 is no figure: None."""
    return value if 0 <= value <= 100 else None


def irtt_figures(doc: dict) -> dict:
    """irtt's result in netcheck's probe vocabulary (ms, percent); only the figures irtt has."""
    stats = doc["stats"]
    ms = lambda ns: ns / 1e6  # noqa: E731  (irtt durations are integer nanoseconds)
    rtt, ipdv = stats["rtt"], stats["ipdv_round_trip"]
    ipdv_send, ipdv_receive = stats.get("ipdv_send", {}), stats.get("ipdv_receive", {})
    received = stats["packets_received"]
    return {
        "status": "ok" if received else "timeout",
        "packets_sent": stats["packets_sent"],
        "packets_received": received,
        "rtt_min_ms": ms(rtt["min"]) if received else None,
        "rtt_mean_ms": ms(rtt["mean"]) if received else None,
        "rtt_p50_ms": ms(rtt["median"]) if received else None,
        "rtt_max_ms": ms(rtt["max"]) if received else None,
        "jitter_ms": ms(ipdv["mean"]) if ipdv.get("n") else None,
        "jitter_up_ms": ms(ipdv_send["mean"]) if ipdv_send.get("n") else None,  # from the server's timestamps
        "jitter_down_ms": ms(ipdv_receive["mean"]) if ipdv_receive.get("n") else None,
        "loss_pct": stats["packet_loss_percent"],
        "loss_up_pct": _percent_or_none(stats["upstream_loss_percent"]),
        "loss_down_pct": _percent_or_none(stats["downstream_loss_percent"]),
        "duplicates": stats["duplicates"],
        "server_packets_received": stats["server_packets_received"],
    }
