"""Overhead of `netcheck agent` at its defaults: CPU, memory, and bytes on the wire each way.

The agent runs in a client network namespace (tests/netns.py); `netcheck serve` and a real
VictoriaMetrics (the v2 write API) listen on the root end of the veth. nftables counters inside
the namespace count IP bytes by kind: the UDP probe (to/from the reflector's port), InfluxDB
writes (to/from VictoriaMetrics' port), and everything else (the A/V probe's media and HTTP
signalling, /v1/info). CPU is the agent's user+system time plus its reaped children (the A/V
probe subprocess), from psutil; memory is the agent's RSS sampled every 0.5 s, and the A/V
child's peak separately (it lives a few seconds every 5 minutes).

    python benchmarks/agent_overhead.py [--duration 300]      # root: it makes a namespace
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from tests.harness.netns import ClientNamespace  # noqa: E402
from tests.harness.tsdb import VictoriaMetrics  # noqa: E402

NFT_RULES = """
table inet bench {{
    chain out {{
        type filter hook output priority 0;
        udp dport {udp} counter comment "udp_up"
        tcp dport {influx} counter comment "influx_up"
        oifname != "lo" counter comment "all_up"
    }}
    chain in {{
        type filter hook input priority 0;
        udp sport {udp} counter comment "udp_down"
        tcp sport {influx} counter comment "influx_down"
        iifname != "lo" counter comment "all_down"
    }}
}}
"""


def counters(ns: ClientNamespace) -> dict[str, int]:
    listing = json.loads(ns.run(["nft", "-j", "list", "table", "inet", "bench"], capture_output=True,
                                text=True, check=True).stdout)
    found = {}
    for item in listing["nftables"]:
        rule = item.get("rule")
        if rule and "comment" in rule:
            counter = next(expr["counter"] for expr in rule["expr"] if "counter" in expr)
            found[rule["comment"]] = counter["bytes"]
    return found


def start_serve(bind: str, home: Path) -> tuple[subprocess.Popen, str, int]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NETCHECK_")},
           "NETCHECK_HOME": str(home), "NETCHECK_ICE_HOST_ADDRESSES": bind}
    process = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "serve", "--bind", bind, "--http-port", "0",
                                "--udp-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=env)
    assert process.stdout is not None
    printed = dict(process.stdout.readline().split() for _ in range(2))
    return process, f"http://{printed['http']}", int(printed["udp"].rsplit(":", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of agent run")
    args = parser.parse_args()
    with TemporaryDirectory() as tmp, ClientNamespace() as ns:
        with VictoriaMetrics(host=ns.root_address) as vm:
            serve, server_url, udp_port = start_serve(ns.root_address, Path(tmp) / "serve")
            ns.run(["nft", "-f", "-"], input=NFT_RULES.format(udp=udp_port, influx=vm.port), text=True, check=True)
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("NETCHECK_")},
                   "NETCHECK_HOME": str(Path(tmp) / "agent"), "NETCHECK_ICE_HOST_ADDRESSES": ns.address,
                   "NETCHECK_INFLUX_URL": vm.url, "NETCHECK_INFLUX_BUCKET": "netcheck",
                   "NETCHECK_INFLUX_ORG": "clinic", "NETCHECK_INFLUX_TOKEN": "t"}
            start_s = time.monotonic()
            agent = ns.popen([sys.executable, str(REPO / "cli.py"), "agent", "--server", server_url,
                              "--duration", f"{args.duration:g}s", "--session", "bench"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
            process = psutil.Process(agent.pid)
            rss_peak_mb = child_rss_peak_mb = 0.0
            rss_samples = []
            while agent.poll() is None:
                try:
                    rss_mb = process.memory_info().rss / 1e6
                    cpu = process.cpu_times()
                    children = process.children(recursive=True)
                    for child in children:
                        try:
                            child_rss_peak_mb = max(child_rss_peak_mb, child.memory_info().rss / 1e6)
                        except psutil.NoSuchProcess:
                            pass
                except psutil.NoSuchProcess:
                    break
                rss_peak_mb = max(rss_peak_mb, rss_mb)
                rss_samples.append(rss_mb)
                last_cpu = cpu
                time.sleep(0.5)
            wall_s = time.monotonic() - start_s
            stderr = agent.stderr.read() if agent.stderr else ""
            agent.wait()
            traffic = counters(ns)
            serve.terminate()
            serve.wait()
    own_cpu_s = last_cpu.user + last_cpu.system
    child_cpu_s = last_cpu.children_user + last_cpu.children_system
    kbit = {name: value * 8 / 1000 / wall_s for name, value in traffic.items()}
    other = {direction: kbit[f"all_{direction}"] - kbit[f"udp_{direction}"] - kbit[f"influx_{direction}"]
             for direction in ("up", "down")}
    per_hour_mb = {name: value * 3600 / wall_s / 1e6 for name, value in traffic.items()}
    print(f"agent at defaults for {wall_s:.0f} s (exit {agent.returncode}); {stderr.strip().splitlines()[-1]}")
    print(f"CPU: {100 * (own_cpu_s + child_cpu_s) / wall_s:.2f} % of one core "
          f"(agent {100 * own_cpu_s / wall_s:.2f} %, A/V subprocess {100 * child_cpu_s / wall_s:.2f} %; "
          f"CPU time to the last sample)")
    print(f"RSS: agent peak {rss_peak_mb:.1f} MB, median {sorted(rss_samples)[len(rss_samples) // 2]:.1f} MB; "
          f"A/V subprocess peak {child_rss_peak_mb:.1f} MB")
    print("traffic, kbit/s (IP bytes, average) | up | down")
    print(f"  UDP probe                          | {kbit['udp_up']:.2f} | {kbit['udp_down']:.2f}")
    print(f"  A/V probe + HTTP to the server     | {other['up']:.2f} | {other['down']:.2f}")
    print(f"  probe total                        | {kbit['udp_up'] + other['up']:.2f} | "
          f"{kbit['udp_down'] + other['down']:.2f}")
    print(f"  InfluxDB writes                    | {kbit['influx_up']:.2f} | {kbit['influx_down']:.2f}")
    print(f"  all                                | {kbit['all_up']:.2f} | {kbit['all_down']:.2f}")
    print(f"per hour, MB: all up {per_hour_mb['all_up']:.2f}, all down {per_hour_mb['all_down']:.2f}, "
          f"InfluxDB up {per_hour_mb['influx_up']:.2f}")


if __name__ == "__main__":
    main()
