"""`netcheck watch` in a real terminal (tmux): what a therapist sees, and that it fits 80x24."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from netcheck.cli.render_watch import render_watch
from netcheck.session.watch import ConnectionStatus, WatchState
from tests.harness.servers import REPO, ServerProcess, start_serve, stop, subprocess_env
from tests.test_watch import SECRET, as_received, post, summary, token, warning

MESSAGE = "The client's voice is breaking up (8 % of packets lost): tone of voice may be missed."
ADVICE = "Check in verbally on how things land; ask the client to move closer to the router."


@pytest.fixture(scope="module")
def hub() -> Iterator[ServerProcess]:
    running = start_serve(env=subprocess_env(NETCHECK_SECRET=SECRET))
    yield running
    stop(running.process)


class Tmux:
    """A private tmux server (its own socket), so the test never touches anyone's sessions."""

    def __init__(self) -> None:
        self.socket = f"netcheck-test-{uuid.uuid4().hex[:8]}"

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True,
                              timeout=10, env=env or subprocess_env()).stdout

    def pane(self) -> str:
        return self("capture-pane", "-p", "-t", "watch")

    def wait_for(self, *texts: str, timeout_s: float = 15.0) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            screen = self.pane()
            if all(text in screen for text in texts) or time.monotonic() > deadline:
                return screen
            time.sleep(0.2)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10, check=False)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (scripts/test installs it)")
def test_the_live_view_in_a_real_terminal(hub: ServerProcess, tmp_path: Path) -> None:
    session_id = f"s-{uuid.uuid4().hex[:12]}"
    command = " ".join(shlex.quote(part) for part in (
        sys.executable, str(REPO / "cli.py"), "watch", "--server", hub.http_url, "--session", session_id))
    env = subprocess_env(NETCHECK_HOME=str(tmp_path), NETCHECK_TOKEN=token(session_id, "therapist"),
                         DBUS_SESSION_BUS_ADDRESS="unix:path=/nonexistent/netcheck-test-bus")  # the fallback, here too
    tmux = Tmux()
    try:
        tmux("new-session", "-d", "-s", "watch", "-x", "100", "-y", "30", "-c", str(REPO),
             f"{command}; echo exit=$?; sleep 30", env=env)
        assert "connected" in tmux.wait_for("● connected"), tmux.pane()
        post(hub.http_url, session_id, "client", [summary(rtt_ms=48.0, loss_pct=2.5, level="fair")])
        post(hub.http_url, session_id, "therapist", [summary(rtt_ms=30.0, loss_pct=0.0, level="good")])
        post(hub.http_url, session_id, "client", [{**warning(message=MESSAGE), "advice": ADVICE}])
        screen = tmux.wait_for(MESSAGE, "you (therapist)", "delay 78 ms", "netcheck watch: warning:", "→ Check")
        print(screen)  # shown with -s: what the therapist sees
        assert "client" in screen and "you (therapist)" in screen
        assert "tone of voice fair    loss 2.5 %" in screen
        assert "timing        good    delay 48 ms" in screen
        assert f"⚠ {MESSAGE}" in screen and "→ Check in verbally" in screen
        assert "delay 78 ms (≈39 one way)" in screen  # 48 + 30: the estimate between the two
        assert "netcheck watch: warning:" in screen  # no notification service: one line above the view…
        assert tmux("display-message", "-p", "-t", "watch", "#{window_bell_flag}").strip() == "1"  # …and the bell
        tmux("send-keys", "-t", "watch", "C-c")
        assert "exit=0" in tmux.wait_for("exit=0", timeout_s=10), tmux.pane()
    finally:
        tmux.kill()


def test_a_busy_session_fits_80x24() -> None:
    state = WatchState(clock=lambda: 100.0)
    for index in range(60):
        state.apply(as_received(summary(rtt_ms=40.0 + 5 * index, level=("good", "fair", "poor")[index % 3]), "client"))
        state.apply(as_received(summary(rtt_ms=20.0, loss_pct=0.0, level="good"), "therapist"))
    for cue in ("facial_expression", "vocal_tone", "conversational_timing", "lip_sync"):
        for leg in ("client", "therapist"):
            state.apply(as_received({**warning(message=MESSAGE), "cue": cue, "advice": ADVICE}, leg))
    console = Console(width=80, height=24, record=True, color_system=None)
    console.print(render_watch(state, ConnectionStatus("reconnecting", "cannot connect to the server", 4.0), "s1"))
    lines = console.export_text().splitlines()
    assert len(lines) <= 24, "\n".join(lines)
    assert all(len(line) <= 80 for line in lines)
    text = "\n".join(lines)
    assert "last event 0 s ago · ◌ reconnecting in 4 s (cannot conn" in text  # the reason's end is cut first
    assert "… and 5 more" in text and "client" in text and "you (therapist)" in text


def test_a_leg_measured_on_the_call_says_so_with_the_path_to_the_clinic_beside_it_in_80x24() -> None:
    """Issue 25: the call's verdict leads the client's panel, the probe's stays as "path to the clinic",
    and the call's warning says it was measured on the call; still 80x24."""
    state = WatchState(clock=lambda: 100.0)
    state.apply(as_received(summary(loss_pct=0.0, level="good"), "client"))
    state.apply(as_received(summary(loss_pct=0.0, level="good"), "therapist"))
    state.apply(as_received({**summary(loss_pct=8.0, level="poor"), "source": "call"}, "client"))
    for cue in ("facial_expression", "vocal_tone"):
        state.apply(as_received({**warning(message=MESSAGE), "cue": cue, "advice": ADVICE, "source": "call"}, "client"))
    console = Console(width=80, height=24, record=True, color_system=None)
    console.print(render_watch(state, ConnectionStatus("connected"), "s1"))
    lines = console.export_text().splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines), "\n".join(lines)
    text = "\n".join(lines)
    assert "client · on the call" in text and "path to the clinic: good" in text
    assert "(on the call)" in text and "you (therapist) · on the call" not in text
    [estimate] = [line for line in lines if "est.:" in line]
    assert "loss 0 %" in estimate, estimate  # the estimate adds the probes' halves, never the call's whole way to them


def test_before_any_event_the_view_says_it_waits() -> None:
    console = Console(width=80, record=True, color_system=None)
    console.print(render_watch(WatchState(), ConnectionStatus("connecting"), "s1"))
    text = console.export_text()
    assert "waiting for this leg's agent" in text and "no event yet" in text and "No warnings." in text
    assert "delay – · loss – · jitter –" in text
