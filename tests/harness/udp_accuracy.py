"""Measuring UDP accuracy through the impairment relay: one probe run of netcheck or irtt, the relay's
per-packet truth for it, and the tolerances the accuracy tests and `benchmarks/accuracy.py` share."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.harness.impairment import (
    REPO_ROOT, UP, Profile, RelayProcess, Truth, compute_truth, is_netcheck_probe,
    netcheck_same_exchange, parse_hostport, read_line,
)
from tests.harness.irtt_runner import (
    irtt_figures, irtt_same_exchange, is_irtt_probe, run_irtt_client,
)

CLI = REPO_ROOT / "cli.py"
SEED = 4  # chosen so that every profile loses packets in both directions within 250 packets
DURATION_S = 5
INTERVAL = "20ms"
SIZE_BYTES = 160
METRICS = ("rtt_mean_ms", "jitter_ms", "loss_up_pct", "loss_down_pct")
MARGIN_OVER_IRTT = {"rtt_mean_ms": 1.0, "jitter_ms": 1.0, "loss_up_pct": 0.5, "loss_down_pct": 0.5}


@dataclass(frozen=True)
class Run:
    """One probe run through the relay: what the tool reported and what the relay did."""

    tool: str
    profile: str
    figures: dict
    truth: Truth
    scheduling_error_us: dict
    up_drops: list[bool]
    """The relay's drop decision for each up datagram, in arrival order."""


def tolerance(metric: str, truth_value: float) -> float:
    return {
        "rtt_mean_ms": max(2.0, 0.05 * truth_value),
        "jitter_ms": max(0.2, 0.15 * truth_value),  # floor: a clean path's jitter (≈ 0.05 ms) is timer noise
        "loss_up_pct": 1.0,
        "loss_down_pct": 1.0,
    }[metric]


def errors(figures: dict, truth: Truth) -> dict[str, float]:
    """|reported - truth| per metric; infinite when the tool reported nothing."""
    out = {}
    for metric in METRICS:
        got, want = figures.get(metric), getattr(truth, metric)
        out[metric] = abs(got - want) if got is not None and want is not None else float("inf")
    return out


def accuracy_failures(figures: dict, truth: Truth) -> list[str]:
    return [
        f"{metric}: reported {figures.get(metric)}, truth {getattr(truth, metric):.3f}, "
        f"error {err:.3f} > {tolerance(metric, getattr(truth, metric)):.3f}"
        for metric, err in errors(figures, truth).items()
        if not err <= tolerance(metric, getattr(truth, metric))
    ]


class NetcheckServer:
    """`netcheck serve` on free loopback ports; `.udp` is its reflector's address."""

    def __enter__(self) -> NetcheckServer:
        self.proc = subprocess.Popen(
            [sys.executable, str(CLI), "serve", "--bind", "127.0.0.1", "--http-port", "0", "--udp-port", "0"],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
        try:
            self.udp = parse_hostport(read_line(self.proc, "udp ", 30).split()[1])
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


def run_netcheck_probe(target: tuple[str, int], duration_s: float) -> dict:
    cmd = [sys.executable, str(CLI), "probe", "udp", f"{target[0]}:{target[1]}", "--interval", INTERVAL,
           "--duration", f"{duration_s:g}s", "--size", str(SIZE_BYTES), "--json"]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=duration_s + 60)
    if done.returncode != 0:
        raise RuntimeError(f"netcheck probe exited {done.returncode}: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout)


def measure_netcheck(profile: Profile, seed: int, reflector: tuple[str, int], workdir: Path,
                     duration_s: float = DURATION_S) -> Run:
    with RelayProcess(reflector, profile, seed, workdir / f"relay-netcheck-{profile.name}.json",
                      head_bytes=24) as relay:
        figures = run_netcheck_probe(relay.address, duration_s)
        log = relay.stop()
    return _run("netcheck", profile, figures, log, compute_truth(log, is_netcheck_probe, netcheck_same_exchange))


def measure_irtt(profile: Profile, seed: int, reflector: tuple[str, int], workdir: Path,
                 duration_s: float = DURATION_S) -> Run:
    with RelayProcess(reflector, profile, seed, workdir / f"relay-irtt-{profile.name}.json") as relay:
        doc = run_irtt_client(relay.address, INTERVAL, f"{duration_s:g}s", SIZE_BYTES)
        log = relay.stop()
    return _run("irtt", profile, irtt_figures(doc), log, compute_truth(log, is_irtt_probe, irtt_same_exchange))


def _run(tool: str, profile: Profile, figures: dict, log: dict, truth: Truth) -> Run:
    ups = sorted((e for e in log["datagrams"] if e["dir"] == UP), key=lambda e: e["index"])
    return Run(tool, profile.name, figures, truth, log["scheduling_error_us"], [e["dropped"] for e in ups])
