"""`netcheck store stats|export`, the config's [influx] table, and the service files in contrib/."""

from __future__ import annotations

import configparser
import json
import os
import plistlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netcheck.config import load_config
from netcheck.errors import ConfigError, StoreError
from netcheck.store.points import Point
from netcheck.store.local import LocalStore
from tests.harness.servers import REPO, subprocess_env

NOW_MS = int(time.time() * 1000)


def cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *args], capture_output=True, text=True,
                          env=subprocess_env(NETCHECK_HOME=str(home), **env), timeout=60)


@pytest.fixture
def home_with_points(tmp_path: Path) -> Path:
    with LocalStore(tmp_path / "netcheck.sqlite3") as store:
        store.add_points([
            Point("netcheck_udp", {"agent": "a", "role": "client"}, {"rtt_p95_ms": 21.5, "session_id": "s1"},
                  NOW_MS - 2 * 3600_000),
            Point("netcheck_udp", {"agent": "a", "role": "client"}, {"rtt_p95_ms": 30.0, "session_id": "s1"},
                  NOW_MS - 60_000),
            Point("netcheck_agent", {"agent": "a"}, {"outbox_pending": 3, "delivery_paused": False}, NOW_MS - 1000),
        ])
        store.mark_delivered([store.pending_points(1)[0].id])
    return tmp_path


def test_store_stats_json_has_the_documented_keys(home_with_points: Path) -> None:
    result = cli(home_with_points, "store", "stats", "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert {key: stats[key] for key in ("points_total", "outbox_pending", "delivered", "dropped")} == {
        "points_total": 3, "outbox_pending": 2, "delivered": 1, "dropped": 0}


def test_store_export_line_protocol_since(home_with_points: Path) -> None:
    result = cli(home_with_points, "store", "export", "--since", "1h")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f'netcheck_udp,agent=a,role=client rtt_p95_ms=30.0,session_id="s1" {NOW_MS - 60_000}',
        f"netcheck_agent,agent=a delivery_paused=false,outbox_pending=3i {NOW_MS - 1000}",
    ]
    everything = cli(home_with_points, "store", "export", "--since", "1d")
    assert len(everything.stdout.splitlines()) == 3


def test_store_export_json_lines(home_with_points: Path) -> None:
    result = cli(home_with_points, "store", "export", "--since", "3h", "--format", "json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["delivered"] for row in rows] == [True, False, False]
    assert rows[0] == {"measurement": "netcheck_udp", "tags": {"agent": "a", "role": "client"},
                       "fields": {"rtt_p95_ms": 21.5, "session_id": "s1"}, "time_ms": NOW_MS - 2 * 3600_000,
                       "delivered": True}


@pytest.mark.parametrize("args", [("--since", "yesterday"), ("--format", "csv")])
def test_store_export_bad_flags_are_usage_errors(home_with_points: Path, args: tuple[str, ...]) -> None:
    result = cli(home_with_points, "store", "export", *args)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_influx_settings_from_file_and_environment(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o600)
    (tmp_path / "config.toml").write_text(
        f'[influx]\nurl = "http://db:8086/"\nbucket = "b"\norg = "o"\ntoken_file = "{token}"\nbatch_size = 100\n')
    settings = load_config({"NETCHECK_HOME": str(tmp_path)}).influx
    assert settings is not None
    assert (settings.url, settings.api, settings.bucket, settings.token, settings.batch_size) == (
        "http://db:8086", "v2", "b", "s3cret", 100)
    assert "s3cret" not in repr(settings) and settings.describe()["token"] == "set"
    overridden = load_config({"NETCHECK_HOME": str(tmp_path), "NETCHECK_INFLUX_API": "v1",
                              "NETCHECK_INFLUX_DATABASE": "netcheck", "NETCHECK_INFLUX_TOKEN": "env"}).influx
    assert overridden is not None and (overridden.api, overridden.database, overridden.token) == ("v1", "netcheck", "env")
    assert load_config({"NETCHECK_HOME": str(tmp_path / "none")}).influx is None


@pytest.mark.parametrize("text, env, message", [
    ('[influx]\nurl = "http://db"\ntoken = "x"\nbucket = "b"\n', {}, "keep secrets out of the config file"),
    ('[influx]\nurl = "http://db"\n', {}, "the v2 API needs a bucket"),
    ("", {"NETCHECK_INFLUX_API": "v1", "NETCHECK_INFLUX_URL": "http://db"}, "the v1 API needs a database"),
    ("", {"NETCHECK_INFLUX_BUCKET": "b"}, "NETCHECK_INFLUX_BUCKET is set but NETCHECK_INFLUX_URL"),
    ("", {"NETCHECK_INFLUX_URL": "ftp://db", "NETCHECK_INFLUX_BUCKET": "b"}, "influx.url"),
    ('[influx]\nurl = "http://db"\nbucket = "b"\nbatch_size = 0\n', {}, "influx.batch_size"),
    ('[influx]\nurl = "http://db"\nbucket = "b"\ncolour = "red"\n', {}, "influx.colour: unknown key"),
    ("[agent]\nwindow_s = 0.1\n", {}, "agent.window_s"),
    ('[agent]\nav_video = "huge"\n', {}, "agent.av_video"),
    ("[store]\nmax_points = 10\n", {}, "store.max_points"),
])
def test_bad_influx_agent_and_store_config_names_the_key(tmp_path: Path, text: str, env: dict[str, str],
                                                         message: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config({"NETCHECK_HOME": str(tmp_path), **env})


def test_the_delivery_backoff_cap_is_a_setting(tmp_path: Path) -> None:
    """`[influx] retry_max_s`: 15 s unless set, 1–300 s (tests compress an outage with it)."""
    (tmp_path / "config.toml").write_text('[influx]\nurl = "http://db"\nbucket = "b"\nretry_max_s = 2\n')
    settings = load_config({"NETCHECK_HOME": str(tmp_path)}).influx
    assert settings is not None and settings.retry_max_s == 2.0
    assert load_config({"NETCHECK_HOME": str(tmp_path / "none"), "NETCHECK_INFLUX_URL": "http://db",
                        "NETCHECK_INFLUX_BUCKET": "b"}).influx.retry_max_s == 15.0  # type: ignore[union-attr]
    (tmp_path / "config.toml").write_text('[influx]\nurl = "http://db"\nbucket = "b"\nretry_max_s = 0.1\n')
    with pytest.raises(ConfigError, match=r"influx.retry_max_s: must be a number in 1..300 s"):
        load_config({"NETCHECK_HOME": str(tmp_path)})


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret")
    token.chmod(0o644)
    (tmp_path / "config.toml").write_text(f'[influx]\nurl = "http://db"\nbucket = "b"\ntoken_file = "{token}"\n')
    with pytest.raises(ConfigError, match="chmod 600"):
        load_config({"NETCHECK_HOME": str(tmp_path)})


def test_systemd_unit_runs_the_agent_and_stops_it_with_sigterm() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(REPO / "contrib" / "netcheck-agent.service")
    service = unit["Service"]
    assert service["ExecStart"].split()[1:3] == ["agent", "$NETCHECK_AGENT_ARGS"]
    assert service["KillSignal"] == "SIGTERM" and service["RestartPreventExitStatus"] == "2"
    assert unit["Install"]["WantedBy"] == "default.target"


def test_launchd_plist_runs_the_agent_and_has_no_secrets() -> None:
    with (REPO / "contrib" / "org.netcheck.agent.plist").open("rb") as handle:
        plist = plistlib.load(handle)
    assert plist["Label"] == "org.netcheck.agent"
    assert plist["ProgramArguments"][1] == "agent"
    assert plist["KeepAlive"] == {"Crashed": True}  # an exit 2 (bad config) stays down
    assert not any("TOKEN" in key or "PASSWORD" in key for key in plist.get("EnvironmentVariables", {}))


def test_python_m_netcheck_is_the_cli() -> None:
    result = subprocess.run([sys.executable, "-m", "netcheck", "--version"], capture_output=True, text=True,
                            cwd=REPO, env={**os.environ}, timeout=30)
    assert result.returncode == 0 and result.stdout.startswith("netcheck ")


def test_a_corrupted_store_is_moved_aside_and_a_fresh_one_made(tmp_path: Path) -> None:
    garbage = b"this is not SQLite " * 100
    (tmp_path / "netcheck.sqlite3").write_bytes(garbage)
    result = cli(tmp_path, "store", "stats", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("\n") == 1 and "not a readable database" in result.stderr
    assert json.loads(result.stdout)["points_total"] == 0
    (aside,) = tmp_path.glob("netcheck.sqlite3.corrupt-*")
    assert aside.read_bytes() == garbage  # kept for inspection, untouched
    again = cli(tmp_path, "store", "stats", "--json")
    assert again.returncode == 0 and again.stderr == ""


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a disk that fills up (root only; CI runs as root)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_clear_error_and_no_corruption(tiny_disk: Path) -> None:
    with LocalStore(tiny_disk / "netcheck.sqlite3") as store:
        store.add_points([Point("m", {}, {"x": 1.0}, NOW_MS)])
    filler = tiny_disk / "filler"
    with filler.open("wb", buffering=0) as handle:  # take the rest of the disk
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    big = [Point("netcheck_udp", {"agent": "a"}, {"note": "x" * 200, "i": i}, NOW_MS + i) for i in range(5000)]
    with pytest.raises(StoreError) as failure:  # at open (no room for the WAL index) or at the write
        with LocalStore(tiny_disk / "netcheck.sqlite3") as store:
            store.add_points(big)
    assert "disk" in str(failure.value)
    result = cli(tiny_disk, "store", "stats")
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "local store" in result.stderr
    filler.unlink()
    with LocalStore(tiny_disk / "netcheck.sqlite3") as store:
        assert store.outbox_stats().points_total == 1  # the failed batch left nothing half-written
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
