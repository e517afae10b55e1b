"""Fill a real InfluxDB 1.x with data from real netcheck runs, so that dashboard queries can be
proven against what netcheck actually writes (not against points someone typed).

    with InfluxDB1() as influx:
        report = fill_influx(influx, tmp_path)   # ≈ 35 s: a server, 4 agents, 2 checks, 2 relays

What runs, all at once, on loopback:

* `netcheck serve`, and two in-process impairment relays in front of its UDP reflector;
* two sessions ("north" and "south" sites), each with a client and a therapist agent (2 s windows);
  the clients' UDP goes through a relay whose profile changes halfway (fair → poor in the north,
  poor → fair in the south, so warnings are raised and, in the south, cleared again), the
  therapists' goes straight to the reflector (good);
* the clients' A/V probes really send degraded media (`[agent] av_video`, `av_audio_offset_ms`):
  20 fps with audio 60 ms early (facial expression and lip sync fair) in the north, 10 fps with
  audio 150 ms early (both poor) in the south; the therapists send 30 fps in step (good);
* `netcheck check --quick` and a full `netcheck check` (with throughput) at the south site.

Why vocal tone is made "fair" by jitter and not by 2 % loss: a 2 s window carries 16 packets, so
its loss is 0 % or ≥ 6.25 % (poor); only jitter (good ≤ 20 ms, fair ≤ 40 ms) lands in between.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.harness.servers import REPO, start_serve, stop, subprocess_env
from tests.harness.delivered import outbox_pending
from tests.harness.impairment import Profile, Relay
from tests.harness.tsdb import InfluxDB1

STORE = "netcheck.sqlite3"
CUES = ("facial_expression", "vocal_tone", "conversational_timing", "lip_sync")
AGENT_DURATION_S = 30.0
LAUNCH_GAP_S = 1.0
"""Between agent launches: four Python start-ups and four first A/V calls at once on 2 cores
delayed replies by ~700 ms and made even the clean path's first windows poor."""
CHECKS_AFTER_S = 8.0
SWITCH_AFTER_S = 16.0
"""When the relays change profile, counted from the first launch (≈ 1 s before its first window)."""
FAIR_PATH = Profile.round_trip("fill-fair", rtt_ms=100, jitter_ms=60, loss_pct=0)
"""RTT p95 ≈ 150 ms (timing fair, far from both bounds); per-direction ±30 ms of uniform jitter
gives an IPDV mean of ≈ 28 ms (vocal tone fair) without reordering packets 100 ms apart. No loss:
see the module doc."""
POOR_PATH = Profile.round_trip("fill-poor", rtt_ms=300, jitter_ms=60, loss_pct=8)
"""RTT p95 ≈ 350 ms (timing poor in every window, so a timing warning is certain); 8 % loss
(vocal tone poor in ≈ 3 of 4 windows). Lossy windows overrun their 2 s slot (the probe waits
for stragglers): a few skipped windows are part of the data."""


@dataclass(frozen=True)
class AgentSpec:
    name: str
    site: str
    session: str
    role: str
    av_video: str
    av_audio_offset_ms: float
    av_every_s: float
    relay: str | None
    """"north" or "south" (which relay carries its UDP), None for the reflector itself."""


AGENTS = (
    AgentSpec("north-client", "north", "sess-north", "client", "320x240@20", 60, 6, "north"),
    AgentSpec("north-therapist", "north", "sess-north", "therapist", "320x240@30", 0, 12, None),
    AgentSpec("south-client", "south", "sess-south", "client", "320x240@10", 150, 6, "south"),
    AgentSpec("south-therapist", "south", "sess-south", "therapist", "320x240@30", 0, 12, None),
)
RELAY_PHASES = {"north": (FAIR_PATH, POOR_PATH), "south": (POOR_PATH, FAIR_PATH)}
CHECKS = (("--quick",), ())
CHECK_SITE = "south"


@dataclass(frozen=True)
class FillReport:
    """What InfluxDB holds after the fill (read back from InfluxDB, except `agents`: the truth)."""

    sessions: tuple[str, ...]
    sites: tuple[str, ...]
    agents: Mapping[str, str]
    """Agent name (AGENTS) → its store's agent id, read from the store: what InfluxDB should show."""
    check_agent: str
    roles: tuple[str, ...]
    checks: int
    """Check assessments in InfluxDB (kind=check)."""
    cue_levels: Mapping[str, frozenset[str]]
    """Per cue, the distinct `<cue>_level` of the session (agent) windows."""
    av_measured: Mapping[str, tuple[tuple[float, float], ...]]
    """Agent name → (lower of the two directions' fps, A/V skew ms) of each of its A/V runs."""
    wall_s: float


class FillError(AssertionError):
    """A run failed or did not deliver; the message says which, with the tail of its stderr."""


def fill_influx(influx: InfluxDB1, workdir: Path) -> FillReport:
    """Run everything against `influx` and report what landed there."""
    start_s = time.monotonic()
    influx_env = {"NETCHECK_INFLUX_URL": influx.url, "NETCHECK_INFLUX_API": "v1",
                  "NETCHECK_INFLUX_DATABASE": influx.database, "NETCHECK_INFLUX_USERNAME": influx.username,
                  "NETCHECK_INFLUX_PASSWORD": influx.password}
    server = start_serve()
    relays: dict[str, Relay] = {}
    running: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
    checks: list[subprocess.Popen[bytes]] = []

    def second_phase() -> None:
        for name, relay in relays.items():
            relay.set_profile(RELAY_PHASES[name][1])

    switch = threading.Timer(SWITCH_AFTER_S, second_phase)
    try:
        for seed, (name, (first, _)) in enumerate(RELAY_PHASES.items(), start=41):
            relays[name] = Relay((server.udp_host, server.udp_port), first, seed=seed, max_clients=128).start()
        launched_s = time.monotonic()
        switch.start()
        for spec in AGENTS:
            time.sleep(LAUNCH_GAP_S if running else 0.0)
            home = _home(workdir / spec.name, spec)
            target = ("--udp-target", "{}:{}".format(*relays[spec.relay].address)) if spec.relay else ()
            running.append((spec.name, home, _spawn(
                home, {**influx_env, "NETCHECK_SITE": spec.site},
                "agent", "--server", server.http_url, "--window", "2s", "--duration", f"{AGENT_DURATION_S:g}s",
                "--session", spec.session, "--role", spec.role, *target)))
        check_home = workdir / "check-south"
        check_home.mkdir(parents=True, exist_ok=True)
        time.sleep(max(0.0, CHECKS_AFTER_S - (time.monotonic() - launched_s)))  # after the start-up burst
        for flags in CHECKS:  # one after the other: they share a store, and a check is heavy on 2 cores
            checks.append(check := _spawn(check_home, {**influx_env, "NETCHECK_SITE": CHECK_SITE},
                           "check", "--server", server.http_url, "--role", "client", *flags))
            _finish(f"check {' '.join(flags) or '(full)'}", check_home, check, timeout_s=60, ok=(0, 3, 4))
        for name, home, process in running:
            _finish(name, home, process, timeout_s=AGENT_DURATION_S + 40 - (time.monotonic() - start_s))
        switch.join()
        _wait_delivered([home for _, home, _ in running] + [check_home])
    finally:
        switch.cancel()
        for process in [process for _, _, process in running] + checks:
            if process.poll() is None:
                process.kill()
                process.wait()
        for relay in relays.values():
            relay.stop()
        stop(server.process)
    agents = {name: _agent_id(home) for name, home, _ in running}
    return _report(influx, agents, _agent_id(check_home), time.monotonic() - start_s)


def _home(home: Path, spec: AgentSpec) -> Path:
    """A NETCHECK_HOME whose config degrades (or not) what this agent's A/V probe sends."""
    home.mkdir(parents=True, exist_ok=True)
    home.joinpath("config.toml").write_text(
        f'[agent]\nav_every_s = {spec.av_every_s:g}\nav_video = "{spec.av_video}"\n'
        f"av_audio_offset_ms = {spec.av_audio_offset_ms:g}\n")
    return home


def _spawn(home: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """`python cli.py ARGS` as a user would run it; output to files (a full pipe would stall it)."""
    with open(home / "stdout.log", "ab") as out, open(home / "stderr.log", "ab") as err:  # the child keeps its copies
        return subprocess.Popen([sys.executable, str(REPO / "cli.py"), *args], cwd=REPO, stdout=out, stderr=err,
                                env=subprocess_env(NETCHECK_HOME=str(home), **env))


def _finish(name: str, home: Path, process: subprocess.Popen[bytes], timeout_s: float,
            ok: tuple[int, ...] = (0,)) -> None:
    """Wait for a run; `check` exits 0, 3 or 4 for its verdict (video, audio only, phone): all data."""
    try:
        code = process.wait(timeout=max(1.0, timeout_s))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise FillError(f"{name} did not finish within {timeout_s:.0f} s:\n{_tail(home)}") from None
    if code not in ok:
        raise FillError(f"{name} exited {code}:\n{_tail(home)}")


def _tail(home: Path, lines: int = 15) -> str:
    return "\n".join(home.joinpath("stderr.log").read_text(errors="replace").splitlines()[-lines:])


def _wait_delivered(homes: list[Path], timeout_s: float = 10.0) -> None:
    """Every stored point reached InfluxDB (each process delivers before it exits; allow a moment)."""
    deadline = time.monotonic() + timeout_s
    while (pending := {home.name: outbox_pending(home / STORE) for home in homes}) and any(pending.values()):
        if time.monotonic() > deadline:
            left = {name: count for name, count in pending.items() if count}
            raise FillError(f"points still pending after the runs ended: {left}")
        time.sleep(0.2)


def _agent_id(home: Path) -> str:
    db = sqlite3.connect(f"file:{home / STORE}?mode=ro", uri=True, timeout=10.0)
    try:
        return str(db.execute("SELECT value FROM meta WHERE key = 'agent_id'").fetchone()[0])
    finally:
        db.close()


def _report(influx: InfluxDB1, agents: dict[str, str], check_agent: str, wall_s: float) -> FillReport:
    def values(influxql: str) -> tuple[str, ...]:
        """The last column of every row of every series (DISTINCT and SHOW TAG VALUES alike)."""
        return tuple(sorted({str(row[-1]) for series in influx.query(influxql) for row in series.get("values", [])}))

    session = "FROM netcheck_assessment WHERE \"kind\" = 'session'"
    cue_levels = {cue: frozenset(values(f'SELECT DISTINCT("{cue}_level") {session}')) for cue in CUES}
    av_measured: dict[str, tuple[tuple[float, float], ...]] = {}
    for name, agent_id in agents.items():
        series = influx.query("SELECT up_video_fps, down_video_fps, av_skew_ms FROM netcheck_av "
                              f"WHERE \"agent\" = '{agent_id}'")
        av_measured[name] = tuple((min(row[1], row[2]), row[3]) for s in series for row in s["values"]
                                  if None not in row[1:])
    return FillReport(
        sessions=values(f'SELECT DISTINCT("session_id") {session}'),
        sites=values('SHOW TAG VALUES WITH KEY = "site"'),
        agents=agents, check_agent=check_agent,
        roles=values('SHOW TAG VALUES WITH KEY = "role"'),
        checks=len(values("SELECT DISTINCT(\"check_id\") FROM netcheck_assessment WHERE \"kind\" = 'check'")),
        cue_levels=cue_levels, av_measured=av_measured, wall_s=round(wall_s, 1),
    )
