"""Verdicts end to end: `netcheck check` through the impairment relay, against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness.servers import ServerProcess
from tests.harness.impairment import Profile, RelayProcess, compute_truth, is_netcheck_probe

pytestmark = pytest.mark.slow


def check_through(run_cli, server: ServerProcess, profile: Profile, seed: int, tmp_path: Path):
    """Run `netcheck check --json` with the reflector behind the relay; return (exit code, report, truth)."""
    with RelayProcess((server.udp_host, server.udp_port), profile, seed, tmp_path / "relay.json") as relay:
        host, port = relay.address
        result = run_cli("check", "--server", server.http_url, "--udp-target", f"{host}:{port}", "--json",
                         "--no-av")
        log = relay.stop()
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout), compute_truth(log, udp_probe_flow(log))


def udp_probe_flow(log: dict):
    """Echo requests of the UDP probe's own flow: the check's reach probe sends a few of its own."""
    from collections import Counter

    heads = [bytes.fromhex(entry["head"]) for entry in log["datagrams"] if entry["dir"] == "up"]
    flows = Counter(head[8:16] for head in heads if is_netcheck_probe(head))
    main_flow = flows.most_common(1)[0][0]
    return lambda head: is_netcheck_probe(head) and head[8:16] == main_flow


def test_300_ms_rtt_makes_timing_poor_and_recommends_the_phone(run_cli, server, tmp_path) -> None:
    code, report, truth = check_through(run_cli, server, Profile.round_trip("300ms", 300, 0, 0), 1, tmp_path)
    assert code == 4
    assert report["recommendation"] == "phone"
    assert report["cues"]["conversational_timing"]["level"] == "poor"
    assert report["cues"]["vocal_tone"]["level"] in ("good", "fair")  # the voice is fine; the delay is not
    assert report["measurements"]["udp"]["rtt_p95_ms"] == pytest.approx(300, abs=15)
    assert any(line.startswith("Delay 3") and "hesitation" in line for line in report["advice"])
    assert "timing is poor" in report["summary"]


def test_6_pct_loss_makes_vocal_tone_poor_and_recommends_the_phone(run_cli, server, tmp_path) -> None:
    code, report, truth = check_through(run_cli, server, Profile.round_trip("6pct", 2, 0, 6), 3, tmp_path)
    udp = report["measurements"]["udp"]
    assert truth.loss_pct > 4.0, "the seed must realise clearly more than 3 % loss"
    assert udp["loss_pct"] == pytest.approx(truth.loss_pct, abs=1.0)
    assert code == 4
    assert report["recommendation"] == "phone"
    assert report["cues"]["vocal_tone"]["level"] == "poor"
    assert report["cues"]["vocal_tone"]["deciding_metric"] == "loss_pct"
    assert report["cues"]["conversational_timing"]["level"] == "good"
    assert any(line.startswith("Packet loss") for line in report["advice"])
