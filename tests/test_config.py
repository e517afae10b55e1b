"""Config: file < environment < flags, validated with messages that name the key."""

from pathlib import Path

import pytest

from netcheck.config import load_config
from netcheck.errors import ConfigError


def write(home: Path, text: str) -> dict[str, str]:
    (home / "config.toml").write_text(text)
    return {"NETCHECK_HOME": str(home)}


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = load_config({"NETCHECK_HOME": str(tmp_path)})
    assert config.server is None
    assert config.store_path == tmp_path / "netcheck.sqlite3"
    assert config.check.udp_duration_s == 3.0


def test_the_av_calls_waits_are_settings_with_their_defaults(tmp_path: Path) -> None:
    """Tests of blocked paths compress them; a user who never sets them waits as before (5 s, 10 s)."""
    defaults = load_config({"NETCHECK_HOME": str(tmp_path)}).check
    assert (defaults.av_gather_timeout_s, defaults.av_connect_timeout_s, defaults.udp_wait_max_s) == (5.0, 10.0, 2.0)
    check = load_config(write(tmp_path, "[check]\nav_gather_timeout_s = 2\nav_connect_timeout_s = 5\n"
                                        "udp_wait_max_s = 0.5\n")).check
    assert (check.av_gather_timeout_s, check.av_connect_timeout_s, check.udp_wait_max_s) == (2.0, 5.0, 0.5)


def test_a_udp_stream_nobody_answers_ends_after_its_wait_setting() -> None:
    import asyncio
    import socket
    import time

    from netcheck.model import Status
    from netcheck.probes.udp import UdpProbe, UdpProbeSettings

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        started_s = time.monotonic()
        result = asyncio.run(UdpProbe(*silent.getsockname(), UdpProbeSettings(duration_s=0.2, wait_max_s=0.3)).run())
    assert result.status == Status.TIMEOUT
    assert time.monotonic() - started_s < 1.5  # the default waits 2 s after the last packet


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    env = write(tmp_path, 'server = "http://file.example:1"\n[check]\nudp_duration_s = 5\n')
    assert load_config(env).server == "http://file.example:1"
    assert load_config(env).check.udp_duration_s == 5.0
    env["NETCHECK_SERVER"] = "http://env.example:2/"
    assert load_config(env).server == "http://env.example:2"


@pytest.mark.parametrize(
    ("text", "message"),
    [("server = 5\n", "server: must be a string"),
     ('server = "ftp://x"\n', "server: bad server URL"),
     ("colour = 1\n", "unknown key 'colour'"),
     ("[check]\nudp_duration_s = -1\n", "check.udp_duration_s: must be a number in"),
     ("[check]\nudp_interval = 20\n", "check.udp_interval: unknown key"),
     ("[check]\nav_connect_timeout_s = 0.1\n", "check.av_connect_timeout_s: must be a number in 0.5..120 s"),
     ("[thresholds.loss_one_way_pct]\ngood = 5\nfair = 2\n", "thresholds.loss_one_way_pct: good"),
     ("[thresholds.loss_pct]\ngood = 0.5\n", "thresholds.loss_pct: renamed to thresholds.loss_one_way_pct"),
     ("server = \n", "not valid TOML")],
)
def test_bad_files_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_hmac_key_file_must_be_private(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("secret-0123456789\n")
    key_file.chmod(0o644)
    env = write(tmp_path, f'hmac_key_file = "{key_file}"\n')
    with pytest.raises(ConfigError, match="hmac_key_file: .* must not be readable by others"):
        load_config(env)
    key_file.chmod(0o600)
    assert load_config(env).hmac_key == b"secret-0123456789"
    key_file.write_text("secret\n")
    with pytest.raises(ConfigError, match="hmac_key_file: the HMAC key must be at least 16 bytes"):
        load_config(env)


@pytest.mark.parametrize(("table", "text"), [
    ("thresholds.rtt_p95_ms.good", "[thresholds.rtt_p95_ms]\ngood = nan\n"),
    ("thresholds.rtt_p95_ms.fair", "[thresholds.rtt_p95_ms]\nfair = inf\n"),
    ("thresholds.video_fps.good", "[thresholds.video_fps]\ngood = +inf\n"),
    ("thresholds.mos.fair", "[thresholds.mos]\nfair = -nan\n"),
    ("thresholds.av_skew_ms.fair", "[thresholds.av_skew_ms]\nfair = [-inf, inf]\n"),
])
def test_nan_and_infinite_thresholds_are_refused_naming_the_key_exit_2(tmp_path: Path, table: str, text: str) -> None:
    """TOML has nan and inf; every comparison with NaN is false, so a NaN bound passed the order check and
    judged nothing; an infinite one made a level unreachable. Both were accepted."""
    import subprocess
    import sys

    from tests.harness.servers import REPO, subprocess_env

    with pytest.raises(ConfigError, match=f"^{table}: must be a finite number"):
        load_config(write(tmp_path, text))
    answer = subprocess.run([sys.executable, str(REPO / "cli.py"), "config", "show"], capture_output=True, text=True,
                            timeout=60, env=subprocess_env(NETCHECK_HOME=str(tmp_path)))
    assert answer.returncode == 2 and answer.stdout == ""
    assert answer.stderr.count("\n") == 1 and f"{table}: must be a finite number" in answer.stderr, answer.stderr
