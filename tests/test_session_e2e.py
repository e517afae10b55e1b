"""In-call warnings end to end (issue 6, Must show 1 and 5): a real `netcheck serve` with its session
hub, a client agent whose UDP path runs through the impairment relay, a therapist agent on a clean
path, and a therapist's `netcheck watch --json`; then `netcheck session report`."""

from __future__ import annotations

import json
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netcheck.tokens import create_token
from tests.harness.servers import REPO, ServerProcess, start_serve, stop, subprocess_env
from tests.harness.impairment import Impairment, Profile, Relay

SECRET = secrets.token_urlsafe(24)
SESSION = "e2e-session-1"
CLEAN = Profile("clean", Impairment(), Impairment())
LOSS_8_PCT = Profile("8pct-up", Impairment(loss_pct=8.0), Impairment())
WINDOW = "2s"
UDP_RATE_CONFIG = "[agent]\nudp_rate_pps = 25\n"
"""Loss warnings weigh packets (netcheck/session/loss_evidence.py): at the default 10 packets/s and 5 s
windows, 8 % loss is caught within 15 s in about 70 % of switches (median 11.6 s); with 2 s windows
at 25 packets/s, every time (p95 8.7 s; `python benchmarks/warning_false_alarms.py`,
docs/session-hub.md "Detection time")."""


@pytest.fixture(scope="module")
def hub_server() -> Iterator[ServerProcess]:
    running = start_serve(env=subprocess_env(NETCHECK_SECRET=SECRET))
    yield running
    stop(running.process)


def token(role: str) -> str:
    return create_token(SECRET.encode(), SESSION, role, 3600)


def netcheck(home: Path, *args: str, token_value: str | None = None) -> subprocess.Popen:
    home.mkdir(parents=True, exist_ok=True)
    env = subprocess_env(NETCHECK_HOME=str(home), **({"NETCHECK_TOKEN": token_value} if token_value else {}))
    return subprocess.Popen([sys.executable, str(REPO / "cli.py"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def lines_of(process: subprocess.Popen) -> queue.Queue:
    """Stdout lines as they come, read by a thread (so the test can wait with a timeout)."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def next_event(lines: queue.Queue, deadline_s: float, matches) -> tuple[dict, float]:  # type: ignore[no-untyped-def]
    """The first event that `matches`, and when it arrived; fails at the deadline (time.monotonic())."""
    while True:
        remaining_s = deadline_s - time.monotonic()
        if remaining_s <= 0:
            pytest.fail("the expected event did not come in time")
        try:
            event = json.loads(lines.get(timeout=remaining_s))
        except queue.Empty:
            continue
        if matches(event):
            return event, time.monotonic()


@pytest.mark.slow
def test_loss_on_the_clients_path_raises_and_clears_a_warning_in_the_therapists_view(
        hub_server: ServerProcess, tmp_path: Path) -> None:
    relay = Relay((hub_server.udp_host, hub_server.udp_port), CLEAN, seed=11, max_clients=128).start()
    watch = netcheck(tmp_path / "therapist", "watch", "--server", hub_server.http_url, "--session", SESSION,
                     "--json", "--no-notify", token_value=token("therapist"))
    (tmp_path / "client").mkdir()
    (tmp_path / "client" / "config.toml").write_text(UDP_RATE_CONFIG)
    agents = [
        netcheck(tmp_path / "client", "agent", "--server", hub_server.http_url, "--session", SESSION, "--role",
                 "client", "--window", WINDOW, "--av-every", "0", "--udp-target", "%s:%d" % relay.address,
                 token_value=token("client")),
        netcheck(tmp_path / "therapist", "agent", "--server", hub_server.http_url, "--session", SESSION,
                 "--role", "therapist", "--window", WINDOW, "--av-every", "0", token_value=token("therapist")),
    ]
    events = lines_of(watch)
    try:
        for leg in ("client", "therapist"):
            next_event(events, time.monotonic() + 20, lambda e, leg=leg: e["type"] == "summary" and e["leg"] == leg)
        relay.set_profile(LOSS_8_PCT)
        switched_s = time.monotonic()
        raised, raised_s = next_event(events, switched_s + 15, lambda e: e["type"] == "warning_raised")
        relay.set_profile(CLEAN)
        switched_back_s = time.monotonic()
        cleared, cleared_s = next_event(events, switched_back_s + 25, lambda e: e["type"] == "warning_cleared")
        print(f"raised {raised_s - switched_s:.1f} s after 8 % loss began; "
              f"cleared {cleared_s - switched_back_s:.1f} s after it ended")
    finally:
        for process in agents:
            process.send_signal(signal.SIGTERM)
        watch.send_signal(signal.SIGTERM)
        relay.stop()
    for process in (*agents, watch):
        process.wait(timeout=20)
        assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    for event in (raised, cleared):
        assert (event["leg"], event["cue"]) == ("client", "vocal_tone")
        assert set(event) >= {"type", "leg", "at", "cue", "level", "message", "advice"}
    assert "client's voice is breaking up" in raised["message"] and raised["advice"]
    assert cleared["message"] == "The client's voice is clear again."

    report = subprocess.run([sys.executable, str(REPO / "cli.py"), "session", "report", SESSION, "--json"],
                            capture_output=True, text=True, timeout=30,
                            env=subprocess_env(NETCHECK_HOME=str(tmp_path / "therapist")))
    assert report.returncode == 0, report.stderr
    timeline = json.loads(report.stdout)
    spans = [(w["leg"], w["cue"]) for w in timeline["warnings"]]
    assert spans == [("client", "vocal_tone")]
    assert timeline["warnings"][0]["raised_at"] == raised["at"]
    assert timeline["warnings"][0]["cleared_at"] == cleared["at"]
    assert set(timeline["windows"]) == {"client", "therapist"}
    assert timeline["minutes_by_level"]["client"]["vocal_tone"]["poor"] > 0
    text = subprocess.run([sys.executable, str(REPO / "cli.py"), "session", "report", SESSION],
                          capture_output=True, text=True, timeout=30,
                          env=subprocess_env(NETCHECK_HOME=str(tmp_path / "therapist"), COLUMNS="120"))
    assert "client vocal tone: The client's voice is breaking up" in text.stdout
    assert "minutes per level" in text.stdout
