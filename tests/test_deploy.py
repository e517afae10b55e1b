"""contrib/netcheck-serve.service: the unit systemd would run is valid and names only real options."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.servers import REPO, subprocess_env

UNIT = REPO / "contrib" / "netcheck-serve.service"


def unit() -> configparser.ConfigParser:
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.read(UNIT)
    return parsed


def test_every_option_of_the_units_command_is_one_serve_has() -> None:
    command = unit()["Service"]["ExecStart"].split()
    assert command[1] == "serve"
    flags = [word for word in command if word.startswith("--")]
    assert {"--bind", "--require-token", "--tls-cert", "--tls-key"} <= set(flags)
    help_text = subprocess.run([sys.executable, "-m", "netcheck", "serve", "--help"], capture_output=True, text=True,
                               env=subprocess_env(COLUMNS="200"), timeout=60).stdout
    assert all(flag in help_text for flag in flags), [flag for flag in flags if flag not in help_text]


def test_secrets_come_from_a_file_and_a_bad_configuration_is_not_restarted() -> None:
    service = unit()["Service"]
    assert service["EnvironmentFile"] == "/etc/netcheck/serve.env"
    assert not any(word in service["ExecStart"].upper() for word in ("SECRET", "PASSWORD", "TOKEN="))
    assert service["KillSignal"] == "SIGTERM" and service["RestartPreventExitStatus"] == "2"
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify` on the unit, its netcheck replaced by this checkout's (the real path must exist)."""
    netcheck = Path(sys.executable).with_name("netcheck")
    copy = tmp_path / "netcheck-serve.service"
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/netcheck", str(netcheck)))
    verify = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in verify.stderr.splitlines() if "netcheck-serve" in line]
    assert verify.returncode == 0 and not complaints, verify.stderr
