"""A client network namespace joined to the root namespace by a veth pair, for end-to-end tests.

    with ClientNamespace(block_udp=True, up=Tbf(300), down=Tbf(300)) as ns:
        ns.root_address        # 10.231.N.1, the root end: bind servers here
        ns.address             # 10.231.N.2, the client's end
        ns.run(["python", "cli.py", ...], env=...)   # ip netns exec NAME ...
        ns.popen([...])

The namespace has its loopback up and only the /30 to the root end: no default route, so nothing
it sends can go anywhere but the root end. Bandwidth caps are `tbf` qdiscs on the egress of each
end (`up` on the namespace end: client -> root; `down` on the root end: root -> client); the kernel
here has no netem. `block_udp` drops every UDP datagram leaving the namespace over the veth,
silently, as a firewall on the path would (an nftables `netdev` egress hook on the namespace end;
an `output`-hook drop would instead fail the sender's sendto with EPERM, which no real network
does). TCP and ICMP still pass. `drop_udp_randomly(80)` drops each UDP datagram leaving the
namespace with probability 80/1000 (`numgen random`, the same egress hook) and counts what it dropped
and passed (`random_drop_counts`), also the RTP packets of one payload type (e.g. Opus, 111: the
RTP header stays in clear under SRTP), so a test can compare a call's own loss with the truth.

Names carry the pid and a counter, and the /30 is chosen under a file lock among those no
interface in the root namespace has yet, so parallel runs do not collide. Everything is removed
on exit, also when the body or the set-up fails. Root is required: a clear RuntimeError otherwise
(CI runs as root), never a skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SUBNET_PREFIX = "10.231"
LOCK_PATH = Path("/tmp/netcheck-netns.lock")
MTU_FRAME_BYTES = 1514
_counter = itertools.count()


class NetnsError(RuntimeError):
    """A namespace, veth, qdisc or firewall command failed; the message has the command and its stderr."""


@dataclass(frozen=True)
class Tbf:
    """A token-bucket cap on one direction: `tc qdisc add dev DEV root tbf rate ...`.

    burst_bytes: the bucket (how much may go at line rate after a pause); at least one full frame.
    limit_bytes: the queue behind the bucket; packets beyond it are dropped. Default: 100 ms at rate.
    """

    rate_kbit: float
    burst_bytes: int | None = None
    limit_bytes: int | None = None

    def __post_init__(self) -> None:
        if not 8 <= self.rate_kbit <= 10_000_000:
            raise ValueError(f"rate_kbit {self.rate_kbit} outside 8..10000000")

    @property
    def burst(self) -> int:
        # tbf drops a frame larger than the bucket; 10 ms at rate is the usual rule of thumb
        return self.burst_bytes or max(2 * MTU_FRAME_BYTES, int(self.rate_kbit * 1000 / 8 * 0.010))

    @property
    def limit(self) -> int:
        return self.limit_bytes or max(self.burst + MTU_FRAME_BYTES, int(self.rate_kbit * 1000 / 8 * 0.100))

    def tc_args(self) -> list[str]:
        return ["tbf", "rate", f"{int(self.rate_kbit)}kbit", "burst", str(self.burst), "limit", str(self.limit)]


def _require_root() -> None:
    if os.geteuid() != 0:
        raise RuntimeError("tests/netns.py needs root (network namespaces, veth, tc, nft); "
                           "run the suite as root, as CI does")
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2")):
        if shutil.which(tool) is None:
            raise RuntimeError(f"tests/netns.py needs `{tool}` (Debian package {package})")


def _sh(*args: str, input_text: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), input=input_text, capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise NetnsError(f"`{' '.join(args)}` exited {done.returncode}: {done.stderr.strip()}")
    return done


def _used_subnets() -> set[int]:
    """Third octets N of every 10.231.N.x address in the root namespace."""
    out = _sh("ip", "-4", "-o", "addr", "show").stdout
    return {int(n) for n in re.findall(rf"inet {re.escape(SUBNET_PREFIX)}\.(\d+)\.", out)}


class ClientNamespace:
    """A network namespace with a veth to the root namespace; a context manager (see the module doc)."""

    def __init__(self, up: Tbf | None = None, down: Tbf | None = None, block_udp: bool = False) -> None:
        self.up = up
        self.down = down
        self.udp_blocked = block_udp
        tag = f"{os.getpid()}{next(_counter):x}"
        self.name = f"netcheck-{tag}"
        self.root_dev = f"nc{tag}r"[:15]
        self.ns_dev = f"nc{tag}n"[:15]
        self.subnet: int | None = None
        self._created_ns = False
        self._created_veth = False

    # --- addresses and commands ------------------------------------------------------------

    @property
    def root_address(self) -> str:
        assert self.subnet is not None, "use inside `with`"
        return f"{SUBNET_PREFIX}.{self.subnet}.1"

    @property
    def address(self) -> str:
        assert self.subnet is not None, "use inside `with`"
        return f"{SUBNET_PREFIX}.{self.subnet}.2"

    def command(self, argv: list[str]) -> list[str]:
        """`argv` wrapped to run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """subprocess.run inside the namespace (kwargs as for subprocess.run)."""
        return subprocess.run(self.command(argv), **kwargs)

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(argv), **kwargs)

    # --- shaping and filtering, also after set-up --------------------------------------------

    def shape(self, up: Tbf | None = None, down: Tbf | None = None) -> None:
        """Replace the caps: `up` on the namespace end's egress, `down` on the root end's; None removes."""
        self.up, self.down = up, down
        self._apply_tbf(self.ns_dev, up, in_namespace=True)
        self._apply_tbf(self.root_dev, down, in_namespace=False)

    def block_udp(self) -> None:
        """Drop every UDP datagram (IPv4 and IPv6) the namespace sends over the veth, silently."""
        if shutil.which("nft") is None:
            raise RuntimeError("tests/netns.py needs `nft` to block UDP (Debian package nftables)")
        ruleset = (
            "table netdev netcheck_block_udp {\n"
            "  chain egress {\n"
            f'    type filter hook egress device "{self.ns_dev}" priority 0; policy accept;\n'
            "    meta l4proto udp counter drop\n"
            "  }\n"
            "}\n"
        )
        _sh(*self.command(["nft", "-f", "-"]), input_text=ruleset)
        self.udp_blocked = True

    def unblock_udp(self) -> None:
        _sh(*self.command(["nft", "delete", "table", "netdev", "netcheck_block_udp"]), check=False)
        self.udp_blocked = False

    def dropped_udp_packets(self) -> int:
        """How many UDP datagrams the block has dropped so far (0 without a block)."""
        done = _sh(*self.command(["nft", "list", "table", "netdev", "netcheck_block_udp"]), check=False)
        match = re.search(r"counter packets (\d+)", done.stdout)
        return int(match.group(1)) if match else 0

    def drop_udp_randomly(self, per_mille: int, rtp_payload_type: int | None = None) -> None:
        """Drop each UDP datagram the namespace sends over the veth with probability per_mille/1000,
        silently (replacing an earlier random drop; its counts start again at 0). With
        `rtp_payload_type`, the RTP packets of that type (RTP version 2, the marker bit aside) are
        counted apart too."""
        if not 0 <= per_mille <= 1000:
            raise ValueError(f"per_mille {per_mille} outside 0..1000")
        if shutil.which("nft") is None:
            raise RuntimeError("tests/netns.py needs `nft` to drop UDP (Debian package nftables)")
        self.stop_dropping()
        rtp = f"@th,64,2 2 @th,73,7 {rtp_payload_type}" if rtp_payload_type is not None else None
        ruleset = (
            "table netdev netcheck_random_drop {\n"
            "  counter dropped {}\n  counter passed {}\n  counter rtp_dropped {}\n  counter rtp_passed {}\n"
            "  chain lose {\n"
            + (f'    {rtp} counter name "rtp_dropped"\n' if rtp else "")
            + '    counter name "dropped" drop\n'
            "  }\n"
            "  chain egress {\n"
            f'    type filter hook egress device "{self.ns_dev}" priority 0; policy accept;\n'
            f"    meta l4proto udp numgen random mod 1000 < {per_mille} jump lose\n"
            + (f'    meta l4proto udp {rtp} counter name "rtp_passed"\n' if rtp else "")
            + '    meta l4proto udp counter name "passed"\n'
            "  }\n"
            "}\n"
        )
        _sh(*self.command(["nft", "-f", "-"]), input_text=ruleset)

    def stop_dropping(self) -> None:
        """Remove the random drop (and its counters)."""
        _sh(*self.command(["nft", "delete", "table", "netdev", "netcheck_random_drop"]), check=False)

    def random_drop_counts(self) -> dict[str, int]:
        """The random drop's counters so far: dropped, passed, rtp_dropped, rtp_passed (all 0 without it)."""
        done = _sh(*self.command(["nft", "list", "table", "netdev", "netcheck_random_drop"]), check=False)
        found = dict(re.findall(r"counter (\w+) \{\s*packets (\d+)", done.stdout))
        return {name: int(found.get(name, 0)) for name in ("dropped", "passed", "rtp_dropped", "rtp_passed")}

    def qdisc(self, side: str) -> str:
        """`tc -s qdisc show` of one end ('up': namespace end, 'down': root end), for diagnostics."""
        argv = ["tc", "-s", "qdisc", "show", "dev", self.ns_dev if side == "up" else self.root_dev]
        return _sh(*(self.command(argv) if side == "up" else argv)).stdout

    # --- life cycle --------------------------------------------------------------------------

    def __enter__(self) -> ClientNamespace:
        _require_root()
        try:
            self._create()
        except BaseException:
            self._destroy()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._destroy()

    def _create(self) -> None:
        _sh("ip", "netns", "add", self.name)
        self._created_ns = True
        with open(LOCK_PATH, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # choose the /30 and take it before another run looks
            used = _used_subnets()
            start = os.getpid() % 250
            free = [n for n in ((start + i) % 250 + 1 for i in range(250)) if n not in used]
            if not free:
                raise NetnsError(f"no free {SUBNET_PREFIX}.N.0/30 left in the root namespace")
            self.subnet = free[0]
            _sh("ip", "link", "add", self.root_dev, "type", "veth", "peer", "name", self.ns_dev,
                "netns", self.name)
            self._created_veth = True
            _sh("ip", "addr", "add", f"{self.root_address}/30", "dev", self.root_dev)
        _sh("ip", "link", "set", self.root_dev, "up")
        inside = self.command
        _sh(*inside(["ip", "link", "set", "lo", "up"]))
        _sh(*inside(["ip", "addr", "add", f"{self.address}/30", "dev", self.ns_dev]))
        # no duplicate detection for the IPv6 link-local address: its end ~1.5 s after `up` is an
        # address change, and Chromium fails the requests in flight then (net::ERR_NETWORK_CHANGED:
        # the page's last modules, seen as a page that never became ready)
        _sh(*inside(["sysctl", "-q", "-w", f"net.ipv6.conf.{self.ns_dev}.accept_dad=0"]))
        _sh(*inside(["ip", "link", "set", self.ns_dev, "up"]))
        self.shape(self.up, self.down)
        if self.udp_blocked:
            self.block_udp()
        self._wait_until_up()

    def _wait_until_up(self, timeout_s: float = 5.0) -> None:
        """Both ends carrier-up and no address of the namespace's end tentative: a program started
        after this sees no address change (IPv4 addresses are valid at once)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            root = _sh("ip", "-o", "link", "show", self.root_dev).stdout
            inside = _sh(*self.command(["ip", "-o", "link", "show", self.ns_dev])).stdout
            tentative = _sh(*self.command(["ip", "-o", "addr", "show", "dev", self.ns_dev, "tentative"])).stdout
            if all("LOWER_UP" in end and "state UP" in end for end in (root, inside)) and not tentative.strip():
                return
            time.sleep(0.05)
        raise NetnsError(f"veth {self.root_dev} did not come up within {timeout_s} s")

    def _apply_tbf(self, dev: str, tbf: Tbf | None, in_namespace: bool) -> None:
        wrap = self.command if in_namespace else (lambda argv: argv)
        _sh(*wrap(["tc", "qdisc", "del", "dev", dev, "root"]), check=False)
        if tbf is not None:
            _sh(*wrap(["tc", "qdisc", "add", "dev", dev, "root", *tbf.tc_args()]))

    def _destroy(self) -> None:
        # deleting one end of a veth deletes both, with their qdiscs; the nft table goes with the
        # namespace. Removal is asynchronous in the kernel: wait until the root end is gone.
        if self._created_veth:
            _sh("ip", "link", "del", self.root_dev, check=False)
        if self._created_ns:
            _sh("ip", "netns", "del", self.name, check=False)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            gone = _sh("ip", "link", "show", self.root_dev, check=False).returncode != 0
            if gone and self.name not in _sh("ip", "netns", "list").stdout:
                break
            time.sleep(0.05)
        self._created_veth = self._created_ns = False


@contextlib.contextmanager
def client_namespace(up: Tbf | None = None, down: Tbf | None = None, block_udp: bool = False):
    """Function form of ClientNamespace."""
    with ClientNamespace(up, down, block_udp) as namespace:
        yield namespace
