"""Each command's human output in a real terminal (tmux) at 80 and 120 columns: no cell cut with an
ellipsis, no figure wrapped away from its unit, and the compact forms where the width asks for them.

`pytest -s tests/test_terminal_tables.py` prints every screen (docs/terminal.md shows them at 80).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.servers import REPO, ServerProcess, start_serve, stop, subprocess_env
from tests.test_watch_terminal import Tmux

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (scripts/test installs it)")

WIDTHS = (80, 120)
SESSION = "s-terminal-tables"
UNITS = r"(?:ms|s|min|%|fps|Mbps|px|packets)"
ORPHAN_UNIT = re.compile(rf"(?:^|\s{{2,}}){UNITS}(?=\s|$)")
"""A unit at the start of a line or of a cell: its figure was left on the line above."""
CUT = re.compile(r"…(?![-+−]?\d)")
"""Rich's ellipsis ends a cut cell; a range such as '-125…+45 ms' is not one."""
DONE = "<<exit="
FullCheck = tuple[str, int, dict[str, str]]
"""A check's screen, its exit code, and the environment whose store holds its report."""


class Terminal(Tmux):
    """test_watch_terminal's private tmux server, with one window of a given size per command."""

    def run(self, width: int, args: list[str], env: dict[str, str], timeout_s: float = 60.0,
            program: tuple[str, ...] = (str(REPO / "cli.py"),)) -> tuple[str, int]:
        """The screen `netcheck ARGS` (or `python PROGRAM ARGS`) leaves in a WIDTHx60 terminal, and its exit code."""
        name = f"w{uuid.uuid4().hex[:6]}"
        command = " ".join(shlex.quote(part) for part in (sys.executable, *program, *args))
        self("new-session", "-d", "-s", name, "-x", str(width), "-y", "60", "-c", str(REPO),
                 f"{command}; echo '{DONE}'$?; sleep 60", env=env)
        deadline = time.monotonic() + timeout_s
        while True:
            screen = self("capture-pane", "-p", "-t", name)
            found = re.search(re.escape(DONE) + r"(\d+)", screen)
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self("kill-session", "-t", name)
        assert found, f"netcheck {' '.join(args)} did not finish:\n{screen}"
        return screen[:found.start()].rstrip("\n"), int(found.group(1))


@pytest.fixture(scope="module")
def terminal() -> Iterator[Terminal]:
    terminal = Terminal()
    yield terminal
    terminal.kill()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    running = start_serve()
    yield running
    stop(running.process)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A NETCHECK_HOME with a real quick check, a stored audio-only check against a long server name, and
    a session with a warning, so that every table has something to lay out."""
    home = tmp_path_factory.mktemp("home")
    env = subprocess_env(NETCHECK_HOME=str(home))
    check = subprocess.run([sys.executable, str(REPO / "cli.py"), "check", "--local", "--quick", "--no-av", "--json"],
                           capture_output=True, text=True, timeout=60, env=env)
    assert check.returncode in (0, 3, 4, 5), check.stderr
    subprocess.run([sys.executable, "-c", SEED], check=True, timeout=30, env=env, cwd=REPO)
    return home


SEED = f"""
from netcheck.cli.common import open_store
from netcheck.config import load_config

report = {{"check_id": "c-seeded", "started_at": "2026-11-29T14:05:07.123+00:00", "duration_s": 9.6,
          "server": "https://netcheck.clinic.example.org:8470", "recommendation": "audio_only", "level": "poor",
          "summary": "Use audio only: the video froze 12 % of the time (received video frame rate 9.5 fps, "
                     "you → clinic), so facial expressions would be missed.",
          "advice": ["Move closer to the router."], "cues": {{}}, "measurements": {{}}}}
def summary(leg, at, vocal):
    return {{"type": "summary", "session_id": "{SESSION}", "leg": leg, "at": at,
            "window": {{"window_s": 30.0, "cues": {{"vocal_tone": {{"level": vocal}},
                                                   "conversational_timing": {{"level": "good"}}}}}}}}
events = [summary("client", "2026-11-29T14:00:00+00:00", "good"), summary("client", "2026-11-29T14:00:30+00:00", "poor"),
          summary("therapist", "2026-11-29T14:00:30+00:00", "good"),
          {{"type": "warning_raised", "session_id": "{SESSION}", "leg": "client", "at": "2026-11-29T14:00:40+00:00",
           "cue": "vocal_tone", "level": "poor", "metric": "loss_one_way_pct", "value": 8.0,
           "message": "The client's voice is breaking up (8 % of packets lost): tone of voice may be missed.",
           "advice": "Check in verbally on how things land; ask the client to move closer to the router."}},
          {{"type": "warning_cleared", "session_id": "{SESSION}", "leg": "client", "at": "2026-11-29T14:02:10+00:00",
           "cue": "vocal_tone", "level": "good", "message": "The client's voice is clear again.", "advice": ""}}]
with open_store(load_config()) as store:
    store.save_check(report)
    store.add_session_events(events)
"""


def assert_readable(screen: str, width: int) -> None:
    """What a person reads whole: nothing cut, no figure without its unit, nothing wider than the terminal."""
    print(f"\n--- {width} columns ---\n{screen}")  # with -s: the screen as it was
    lines = screen.splitlines()
    assert lines, "nothing on the screen"
    for line in lines:
        assert len(line) <= width
        assert not CUT.search(line), f"a cell was cut: {line!r}"
        assert not ORPHAN_UNIT.search(line), f"a unit was wrapped away from its figure: {line!r}"


@pytest.mark.parametrize("width", WIDTHS)
def test_history(terminal: Terminal, home: Path, width: int) -> None:
    screen, code = terminal.run(width, ["history"], subprocess_env(NETCHECK_HOME=str(home)))
    assert code == 0
    assert_readable(screen, width)
    seeded = next(line for line in screen.splitlines() if "audio only" in line)
    if width < 120:  # compact: month-day hour:minute, the host without its scheme (breaking after a dot)
        assert re.match(r"11-29 14:05\s+audio only\s+poor\s+netcheck\.clinic\.\s", seeded), seeded
        assert re.search(r"^\s+example\.org:8470\s", screen, re.MULTILINE) and "https://" not in screen, screen
    else:
        assert re.match(r"2026-11-29 14:05:07\s+audio only\s+poor\s+https://netcheck\.clinic\.example\.org:8470\s",
                        seeded), seeded
    assert "9.5 fps" in screen and "12 %" in screen  # the summary wraps, its figures whole


@pytest.mark.parametrize("width", WIDTHS)
def test_store_stats(terminal: Terminal, home: Path, width: int) -> None:
    screen, code = terminal.run(width, ["store", "stats"], subprocess_env(NETCHECK_HOME=str(home)))
    assert code == 0
    assert_readable(screen, width)
    assert re.search(r"^points_total\s+\d+$", screen, re.MULTILINE), screen


@pytest.mark.parametrize("width", WIDTHS)
def test_session_report(terminal: Terminal, home: Path, width: int) -> None:
    screen, code = terminal.run(width, ["session", "report", SESSION], subprocess_env(NETCHECK_HOME=str(home)))
    assert code == 0
    assert_readable(screen, width)
    assert "14:00:40 – 14:02:10 (1.5 min)" in screen
    flat = " ".join(screen.split())  # the warning wraps beside its time; read it as one text
    assert "client vocal tone: The client's voice is breaking up (8 % of packets lost)" in flat
    assert "client: minutes per level" in screen


@pytest.mark.parametrize("width", WIDTHS)
def test_quick_check_names_its_delays(terminal: Terminal, home: Path, width: int) -> None:
    screen, code = terminal.run(width, ["check", "--local", "--quick", "--no-av"],
                                subprocess_env(NETCHECK_HOME=str(home)))
    assert code in (0, 3, 4, 5)
    assert_readable(screen, width)
    # no A/V call, no speed test: the UDP probe's RTT is the idle one, and it decided timing
    assert re.search(r"^Conversational(?: timing)?\s+\w+\s+[\d.]+ ms\s+≤ 140 ms\s+≤ 240 ms\s+idle RTT p95", screen, re.MULTILINE), screen
    assert re.search(r"^idle RTT p95\s+[\d.]+ ms\s+← timing judged on this", screen, re.MULTILINE), screen


DRAW_STORED_CHECK = """
from netcheck.cli.common import open_store, stdout_console
from netcheck.cli.render import render_check
from netcheck.config import load_config

with open_store(load_config()) as store:
    render_check(store.list_checks(1)[0], stdout_console())
"""
"""What `netcheck check` prints after measuring (netcheck/cli/check.py), drawn from the report it stored."""


@pytest.fixture(scope="module")
def full_check(terminal: Terminal, tmp_path_factory: pytest.TempPathFactory) -> FullCheck:
    """One real full check, run by `netcheck check --local` in the terminal at the narrowest width: its
    screen, exit code, and the environment whose store holds its report (the only check there)."""
    home = tmp_path_factory.mktemp("full-check-home")
    config = home / "check-phases.toml"  # every phase, each shortened through [check]
    config.write_text("[check]\nudp_duration_s = 1.0\nav_duration_s = 2.0\n")
    env = subprocess_env(NETCHECK_HOME=str(home), NETCHECK_CONFIG=str(config))
    screen, code = terminal.run(min(WIDTHS), ["check", "--local"], env, timeout_s=90)
    return screen, code, env


@pytest.mark.slow
@pytest.mark.parametrize("width", WIDTHS)
def test_full_check_names_each_delay_and_the_one_that_decided(terminal: Terminal, full_check: FullCheck,
                                                              width: int) -> None:
    # the table's rows, not the figures, are tested: one real check is measured (at 80 columns, by the
    # command itself) and the same report is drawn by the check's own renderer at the other widths
    screen, code, env = full_check
    if width != min(WIDTHS):
        screen, drawn = terminal.run(width, ["-c", DRAW_STORED_CHECK], env, program=())
        assert drawn == 0, screen
    assert code in (0, 3, 4, 5)
    assert_readable(screen, width)
    for name in ("idle RTT before the speed test", "RTT p95 during the call", "RTT p95 under download load",
                 "RTT p95 under upload load"):
        assert re.search(rf"^{name}\s+[\d.]+ ms", screen, re.MULTILINE), (name, screen)
    judged = re.search(r"^(RTT p95 [\w ]+?)\s+[\d.]+ ms\s+← timing judged on this", screen, re.MULTILINE)
    assert judged, screen
    flat = " ".join(screen.split())  # the cue table's timing row names the same figure, wrapped or not
    assert re.search(rf"Conversational .*≤ 240 ms {judged.group(1).split()[0]}", flat), screen
    assert re.search(r"\d fps", screen) and re.search(r"\d Mbps down", screen)


@pytest.mark.parametrize("width", WIDTHS)
def test_probe_renders(terminal: Terminal, server: ServerProcess, width: int, tmp_path: Path) -> None:
    env = subprocess_env(NETCHECK_HOME=str(tmp_path))
    for args in (["probe", "udp", server.udp_target, "--server", server.http_url, "--duration", "1s"], ["probe", "system", "--duration", "0.5s"],
                 ["probe", "reach", "--server", server.http_url]):
        screen, code = terminal.run(width, args, env)
        assert code == 0, screen
        assert_readable(screen, width)
        assert re.search(r"^status\s+ok$", screen, re.MULTILINE), screen


PROBE_KEEPING_ITS_FIGURES = """
import json, sys
from pathlib import Path
from netcheck.cli import main, probe
from netcheck.model import result_fields

finish, kept = probe.finish_probe, Path(sys.argv[1])
def keeping(result, json_output, render, what):
    kept.write_text(json.dumps(result_fields(result)))
    return finish(result, json_output, render, what)
probe.finish_probe = keeping
main(sys.argv[2:])
"""
"""`netcheck ARGS` in the process, as cli.py runs it, writing the figures it draws to a file (argv[1])."""
DRAW_KEPT_FIGURES = """
import json, sys
from functools import partial
from netcheck.cli.common import stdout_console
from netcheck.cli.render import render_av, render_fields

draw = {"av": render_av, "throughput": partial(render_fields, "Throughput")}[sys.argv[1]]
draw(json.loads(open(sys.argv[2]).read()), stdout_console())
"""
"""What `netcheck probe av|throughput` draws (netcheck/cli/probe.py), drawn again from the kept figures."""
MEASURED_PROBES = ("av", "throughput")
ProbeScreens = dict[str, tuple[str, int, Path]]


@pytest.fixture(scope="module")
def measured_probes(terminal: Terminal, server: ServerProcess,
                    tmp_path_factory: pytest.TempPathFactory) -> ProbeScreens:
    """`probe av` and `probe throughput` each measured once, drawn in the terminal at the narrowest width:
    per probe its screen, exit code, and the file holding the figures it drew."""
    home = tmp_path_factory.mktemp("probe-home")
    extra = {"av": ["--duration", "2s"], "throughput": []}
    screens = {}
    for name in MEASURED_PROBES:
        kept = home / f"{name}.json"
        args = [str(kept), "probe", name, "--server", server.http_url, *extra[name]]
        screen, code = terminal.run(min(WIDTHS), ["-c", PROBE_KEEPING_ITS_FIGURES, *args],
                                    subprocess_env(NETCHECK_HOME=str(home)), timeout_s=90, program=())
        screens[name] = (screen, code, kept)
    return screens


@pytest.mark.slow
@pytest.mark.parametrize("width", WIDTHS)
def test_av_and_throughput_probe_renders(terminal: Terminal, measured_probes: ProbeScreens, width: int) -> None:
    # measured once (at 80 columns, by the command run in the process), drawn again at the other widths
    for name in MEASURED_PROBES:
        screen, code, kept = measured_probes[name]
        assert code == 0, screen
        if width != min(WIDTHS):
            screen, drawn = terminal.run(width, ["-c", DRAW_KEPT_FIGURES, name, str(kept)], subprocess_env(),
                                         program=())
            assert drawn == 0, screen
        assert_readable(screen, width)
