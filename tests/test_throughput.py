"""Throughput and bufferbloat against the kernel's ground truth: tbf caps on a veth between namespaces."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.netns import ClientNamespace, Tbf
from tests.harness.throughput_runs import MEGABIT, TCP_GOODPUT, netcheck_in, server_on_root_side, throughput_in

pytestmark = [pytest.mark.slow, pytest.mark.netns]


@pytest.fixture
def capped_8_2() -> Iterator[ClientNamespace]:
    with ClientNamespace(up=Tbf(2 * MEGABIT), down=Tbf(8 * MEGABIT)) as namespace:
        yield namespace


def test_8_down_2_up_is_measured_within_10_percent(capped_8_2, tmp_path) -> None:
    code, result, stderr = throughput_in(capped_8_2, tmp_path, "--duration", "10s")
    assert code == 0, stderr
    assert result["download_mbps"] == pytest.approx(8 * TCP_GOODPUT, rel=0.10), result
    assert result["upload_mbps"] == pytest.approx(2 * TCP_GOODPUT, rel=0.10), result
    assert result["bytes_down"] > 1e6 and result["bytes_up"] > 2e5


def test_deep_queue_shows_bufferbloat(tmp_path) -> None:
    deep = Tbf(2 * MEGABIT, limit_bytes=2 * MEGABIT * 1000 // 8)  # one second of queue
    with ClientNamespace(up=deep, down=Tbf(8 * MEGABIT, limit_bytes=8 * MEGABIT * 1000 // 8)) as namespace:
        code, result, stderr = throughput_in(namespace, tmp_path)
    assert code == 0, stderr
    assert result["bufferbloat_ms"] >= 100, result
    assert result["loaded_rtt_up_ms"] >= 300, result


def test_shallow_queue_keeps_bufferbloat_small(tmp_path) -> None:
    shallow = dict(burst_bytes=4000, limit_bytes=6000)  # a few packets: an AQM-like short queue
    with ClientNamespace(up=Tbf(8 * MEGABIT, **shallow), down=Tbf(8 * MEGABIT, **shallow)) as namespace:
        code, result, stderr = throughput_in(namespace, tmp_path)
    assert code == 0, stderr
    assert result["bufferbloat_ms"] < 30, result


def test_check_on_a_bloated_link_says_why_the_timing_suffers(tmp_path) -> None:
    """Must show 1: the deep queue's bufferbloat reaches the verdict's timing cue and its advice."""
    deep = Tbf(2 * MEGABIT, limit_bytes=2 * MEGABIT * 1000 // 8)
    with ClientNamespace(up=deep, down=Tbf(8 * MEGABIT, limit_bytes=8 * MEGABIT * 1000 // 8)) as namespace:
        with server_on_root_side(namespace, tmp_path) as url:
            code, report, stderr = netcheck_in(namespace, tmp_path, "check", "--server", url, "--no-av", "--json")
    assert report, stderr
    assert report["measurements"]["throughput"]["bufferbloat_ms"] >= 100, report["measurements"]["throughput"]
    timing = report["cues"]["conversational_timing"]
    assert timing["level"] == "poor" and "under load" in timing["metrics"]["rtt_p95_ms"]["source"], timing
    assert any(line.startswith("Delay rises from") for line in report["advice"]), report["advice"]
    assert (report["recommendation"], code) == ("phone", 4)
