"""Accuracy of `netcheck probe udp` against the impairment relay's own per-packet log, and against
irtt run through the same relay profile and seed.

Per profile: `netcheck serve`'s reflector behind a fresh relay, `netcheck probe udp` through it,
its figures compared with the relay's truth; then irtt the same way. netcheck must be within the
absolute tolerances and no worse than irtt by more than a small margin.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.impairment import (
    PROFILES, REPO_ROOT, UP, Impairer, Profile, RelayProcess, Truth, compute_truth, is_netcheck_probe,
    netcheck_same_exchange, parse_hostport, read_line,
)
from tests.irtt_runner import (
    IrttServer, irtt_available, irtt_figures, irtt_same_exchange, is_irtt_probe, run_irtt_client,
)

CLI = REPO_ROOT / "cli.py"
SEED = 4  # chosen so that every profile loses packets in both directions within 250 packets
DURATION_S = 5
INTERVAL = "20ms"
SIZE_BYTES = 160
METRICS = ("rtt_mean_ms", "jitter_ms", "loss_up_pct", "loss_down_pct")
MARGIN_OVER_IRTT = {"rtt_mean_ms": 1.0, "jitter_ms": 1.0, "loss_up_pct": 0.5, "loss_down_pct": 0.5}

pytestmark = pytest.mark.slow


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


# --- fixtures: one server of each kind, one run of each tool per profile, all torn down ---------


@pytest.fixture(scope="module")
def netcheck_reflector():
    if not CLI.exists():
        pytest.fail(f"{CLI} is missing")
    with NetcheckServer() as server:
        yield server.udp


@pytest.fixture(scope="module")
def irtt_reflector():
    if not irtt_available():
        if os.environ.get("CI"):
            pytest.fail("irtt is not installed (apt install irtt)")
        pytest.skip("irtt is not installed (apt install irtt)")
    with IrttServer() as server:
        yield server.address


@pytest.fixture(scope="module")
def runs(netcheck_reflector, irtt_reflector, tmp_path_factory):
    """Measure lazily and once per (tool, profile), in one test run."""
    workdir = tmp_path_factory.mktemp("accuracy")
    cache: dict[tuple[str, str], Run] = {}

    def get(tool: str, name: str) -> Run:
        if (tool, name) not in cache:
            measure, reflector = {"netcheck": (measure_netcheck, netcheck_reflector),
                                  "irtt": (measure_irtt, irtt_reflector)}[tool]
            cache[tool, name] = measure(PROFILES[name], SEED, reflector, workdir)
        return cache[tool, name]

    return get


def _assert_truth_is_sound(run: Run) -> None:
    t = run.truth
    assert t.pair_mismatches == 0, "a reply did not match the relay's FIFO pairing"
    assert t.unanswered == 0 and t.not_forwarded == 0, t
    # irtt may stop a few packets short of duration × rate (seen: 247 of 250); the relay saw every one it sent
    assert abs(t.probes_sent - DURATION_S * 50) <= 5, t


# --- the tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROFILES)
def test_netcheck_matches_relay_truth(runs, name):
    run = runs("netcheck", name)
    _assert_truth_is_sound(run)
    assert run.figures["status"] == "ok"
    assert run.figures["packets_sent"] == run.truth.probes_sent
    assert run.figures["packets_received"] == run.truth.round_tripped
    assert not accuracy_failures(run.figures, run.truth), (accuracy_failures(run.figures, run.truth), run.truth)


@pytest.mark.parametrize("name", PROFILES)
def test_irtt_matches_relay_truth(runs, name):
    """The reference must agree with the relay too, or the comparison below means nothing."""
    run = runs("irtt", name)
    _assert_truth_is_sound(run)
    assert not accuracy_failures(run.figures, run.truth), (accuracy_failures(run.figures, run.truth), run.truth)


@pytest.mark.parametrize("name", PROFILES)
def test_netcheck_no_less_accurate_than_irtt(runs, name):
    ours, theirs = runs("netcheck", name), runs("irtt", name)
    our_err, their_err = errors(ours.figures, ours.truth), errors(theirs.figures, theirs.truth)
    worse = {m: (our_err[m], their_err[m]) for m in METRICS if not our_err[m] <= their_err[m] + MARGIN_OVER_IRTT[m]}
    assert not worse, f"netcheck error vs irtt error: {worse}"


def test_the_check_can_fail(runs):
    """Figures from one profile must not pass as another's, nor a perturbed copy as the original;
    the relay's drop decisions are those of its seed, not of another seed."""
    calm, rough = runs("netcheck", "20ms-1pct"), runs("netcheck", "150ms-5pct-burst3")
    assert accuracy_failures(calm.figures, rough.truth)
    assert accuracy_failures(rough.figures, calm.truth)
    for metric in METRICS:
        value = getattr(calm.truth, metric)
        nudged = {**calm.figures, metric: value + 1.01 * tolerance(metric, value)}
        assert any(f.startswith(metric) for f in accuracy_failures(nudged, calm.truth))

    impairment = PROFILES["150ms-5pct-burst3"].up

    def expected(seed: int) -> list[bool]:
        impairer = Impairer(impairment, seed, UP)
        return [impairer.decide()[0] for _ in rough.up_drops]

    assert rough.up_drops == expected(SEED)
    assert rough.up_drops != expected(SEED + 1)
