"""The CLI as a user runs it: real `netcheck serve` subprocesses on loopback, real exit codes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from tests.harness.servers import REPO, ServerProcess, start_serve, stop, subprocess_env

CHECK_KEYS = {"recommendation", "level", "cues", "advice", "measurements", "started_at", "duration_s"}
CUES = {"facial_expression", "vocal_tone", "conversational_timing", "lip_sync"}
UDP_FIELDS = [
    "status", "packets_sent", "packets_received", "rtt_min_ms", "rtt_mean_ms", "rtt_p50_ms", "rtt_p95_ms",
    "rtt_max_ms", "jitter_ms", "jitter_rfc3550_ms", "jitter_up_ms", "jitter_down_ms", "loss_pct", "loss_up_pct", "loss_down_pct", "loss_burst_max",
    "duplicates", "reordered", "error",
]


def assert_one_line_error(result, exit_code: int, contains: str) -> None:
    assert result.returncode == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert contains in lines[0]


def test_local_check_without_av_recommends_video_on_what_it_measured(run_cli) -> None:
    result = run_cli("check", "--local", "--json", "--no-av", "--quick")  # no A/V, no throughput
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert CHECK_KEYS <= set(report)
    assert set(report["cues"]) == CUES
    assert report["recommendation"] == "video"
    assert report["cues"]["facial_expression"]["level"] == "unknown"
    assert report["cues"]["lip_sync"]["level"] == "unknown"
    assert report["cues"]["vocal_tone"]["level"] == "good"
    assert "not part of this verdict" in report["summary"]
    assert list(report["measurements"]["udp"]) == UDP_FIELDS
    assert report["measurements"]["udp"]["packets_received"] == report["measurements"]["udp"]["packets_sent"]
    assert report["measurements"]["system"]["interface_kind"] == "loopback"

    history = run_cli("history", "--json")
    assert history.returncode == 0
    assert [entry["check_id"] for entry in json.loads(history.stdout)] == [report["check_id"]]


def test_check_against_a_running_server_renders_a_verdict(run_cli, server: ServerProcess) -> None:
    result = run_cli("check", "--server", server.http_url, "--quick")
    assert result.returncode == 0, result.stderr
    assert "Video should work" in result.stdout
    for title in ("Facial expression", "Vocal tone", "Conversational", "Lip sync"):
        assert title in result.stdout


def test_server_from_environment_and_udp_target_override(run_cli, server: ServerProcess) -> None:
    result = run_cli("check", "--quick", "--json", "--udp-target", server.udp_target,
                     extra_env={"NETCHECK_SERVER": server.http_url})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["server"] == server.http_url


def test_udp_target_that_does_not_answer_is_exit_5(run_cli, server: ServerProcess) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        result = run_cli("check", "--server", server.http_url, "--quick", "--json", "--no-av", "--udp-target",
                         f"127.0.0.1:{port}")
    assert result.returncode == 5
    report = json.loads(result.stdout)
    assert report["recommendation"] == "unknown"
    assert report["measurements"]["udp"]["status"] == "timeout"
    assert any("blocks UDP" in line for line in report["advice"])


def test_probe_udp_json_has_exactly_the_contract_fields(run_cli, server: ServerProcess) -> None:
    result = run_cli("probe", "udp", server.udp_target, "--server", server.http_url, "--duration", "1s",
                     "--interval", "10ms", "--json")
    assert result.returncode == 0, result.stderr
    fields = json.loads(result.stdout)
    assert list(fields) == UDP_FIELDS
    assert fields["packets_sent"] == 100
    assert fields["loss_pct"] == 0.0


def test_refused_server_is_exit_5_within_5_s(run_cli) -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]  # nothing listens here once closed
    start = time.monotonic()
    result = run_cli("check", "--server", f"http://127.0.0.1:{port}")
    assert time.monotonic() - start < 5.0
    assert_one_line_error(result, 5, "unreachable")


def test_silent_server_is_exit_5_within_5_s(run_cli) -> None:
    with socket.socket() as black_hole:  # accepts TCP connections (backlog) but never answers HTTP
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(8)
        start = time.monotonic()
        result = run_cli("check", "--server", f"http://127.0.0.1:{black_hole.getsockname()[1]}")
        elapsed = time.monotonic() - start
    assert elapsed < 5.0
    assert_one_line_error(result, 5, "did not answer")


def test_not_a_netcheck_server_is_exit_5(run_cli, server: ServerProcess) -> None:
    result = run_cli("check", "--server", server.http_url + "/nothing-here")
    assert_one_line_error(result, 5, "HTTP 404")


@pytest.mark.parametrize(
    ("args", "contains"),
    [(("check", "--server", "not a url"), "bad server URL"),
     (("check", "--server", "http://host:99999"), "bad server URL"),
     (("check",), "no server"),
     (("check", "--bogus"), "No such option"),
     (("probe", "udp", "127.0.0.1:1", "--duration", "3 parsecs"), "bad --duration"),
     (("probe", "udp", "127.0.0.1:1", "--interval", "0ms"), "interval 0 ms outside"),
     (("probe", "udp", "127.0.0.1:1", "--size", "10"), "packet size 10 outside"),
     (("probe", "udp", "no-port"), "bad target"),
     (("serve", "--udp-port", "70000"), "--udp-port 70000 outside"),
     (("nonsense",), "No such command")],
)
def test_usage_errors_are_one_line_and_exit_2(run_cli, args: tuple[str, ...], contains: str) -> None:
    assert_one_line_error(run_cli(*args), 2, contains)


def test_bad_config_file_names_the_key(run_cli, netcheck_home) -> None:
    (netcheck_home / "config.toml").write_text("[thresholds.jitter_one_way_ms]\ngood = 'low'\n")
    assert_one_line_error(run_cli("check", "--local"), 2, "thresholds.jitter_one_way_ms.good: must be a number")
    (netcheck_home / "config.toml").write_text("[thresholds.jitter_ms]\ngood = 5\n")
    assert_one_line_error(run_cli("check", "--local"), 2, "thresholds.jitter_ms: renamed to thresholds.jitter_one_way_ms")


def test_config_init_path_and_show(run_cli, netcheck_home) -> None:
    assert run_cli("config", "path").stdout.strip() == str(netcheck_home / "config.toml")
    assert run_cli("config", "init").returncode == 0
    assert (netcheck_home / "config.toml").exists()
    assert_one_line_error(run_cli("config", "init"), 2, "already exists")
    shown = json.loads(run_cli("config", "show").stdout)
    assert shown["config_file_exists"] is True
    assert shown["thresholds"]["rtt_p95_ms"] == {"good": 140, "fair": 240}


def test_hmac_server_rejects_clients_without_the_key(run_cli, tmp_path) -> None:
    """A shared key still works as it did; a check without it uses the key /v1/info hands out for
    its own address (issue 15), so it measures too; an untagged probe gets no answer."""
    key = "clinic-secret-2026"
    secured = start_serve(env=subprocess_env(NETCHECK_HMAC_KEY=key, NETCHECK_HOME=str(tmp_path)))
    try:
        unsigned = run_cli("probe", "udp", secured.udp_target, "--duration", "0.5s", "--json")
        assert unsigned.returncode == 5
        assert json.loads(unsigned.stdout)["status"] == "timeout"  # dropped silently, as a hostile packet
        signed = run_cli("probe", "udp", secured.udp_target, "--duration", "0.5s", "--json",
                         extra_env={"NETCHECK_HMAC_KEY": key})
        assert signed.returncode == 0, signed.stderr
        assert json.loads(signed.stdout)["loss_pct"] == 0.0
        keyed = run_cli("check", "--server", secured.http_url, "--quick", "--no-av", "--json")
        assert keyed.returncode == 0, keyed.stderr
        assert json.loads(keyed.stdout)["measurements"]["udp"]["loss_pct"] == 0.0
    finally:
        stop(secured.process)


def test_a_short_hmac_key_is_refused(run_cli) -> None:
    assert_one_line_error(run_cli("check", "--local", extra_env={"NETCHECK_HMAC_KEY": "short"}), 2,
                          "NETCHECK_HMAC_KEY: the HMAC key must be at least 16 bytes")


def test_help_and_version(run_cli) -> None:
    assert run_cli("--help").returncode == 0
    assert run_cli("--version").stdout.startswith("netcheck ")


def test_ipv6_server_and_probe(run_cli) -> None:
    process = subprocess.Popen(
        [sys.executable, str(REPO / "cli.py"), "serve", "--bind", "::1", "--http-port", "0", "--udp-port", "0"],
        stdout=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        http_line, udp_line = process.stdout.readline().split(), process.stdout.readline().split()
        assert http_line[0] == "http" and udp_line[0] == "udp" and udp_line[1].startswith("[::1]:")
        probe = run_cli("probe", "udp", udp_line[1], "--server", f"http://{http_line[1]}", "--duration", "0.5s",
                        "--json")
        assert probe.returncode == 0, probe.stderr
        assert json.loads(probe.stdout)["packets_received"] == 25
        check = run_cli("check", "--server", f"http://{http_line[1]}", "--quick", "--json", "--no-av")
        assert check.returncode == 0, check.stderr
    finally:
        stop(process)


@pytest.mark.slow
def test_local_check_with_av_measures_all_four_cues(run_cli) -> None:
    result = run_cli("check", "--local", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["recommendation"] == "video"
    assert {cue: verdict["level"] for cue, verdict in report["cues"].items()} == {
        "facial_expression": "good", "vocal_tone": "good", "conversational_timing": "good", "lip_sync": "good"}
    av = report["measurements"]["av"]
    assert av["status"] == "ok" and av["ice_path"] == "host"
    assert av["downstream"]["video_height"] == 720
    assert "not part of this verdict" not in report["summary"]


@pytest.mark.netns
def test_speedtest_backend_offline_is_unreachable_and_exit_5(netcheck_home) -> None:
    """Offline by construction: the CLI runs in a network namespace without a route."""
    from tests.harness.netns import ClientNamespace

    start = time.monotonic()
    with ClientNamespace() as offline:
        result = offline.run([sys.executable, str(REPO / "cli.py"), "probe", "throughput", "--backend", "speedtest",
                              "--json"], capture_output=True, text=True, timeout=60, cwd=REPO,
                             env=subprocess_env(NETCHECK_HOME=str(netcheck_home)))
    assert time.monotonic() - start < 30
    assert result.returncode == 5, result.stderr
    assert json.loads(result.stdout)["status"] in ("unreachable", "timeout")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
