"""Throughput and bufferbloat against the kernel's ground truth: tbf caps on a veth between namespaces."""

from __future__ import annotations

import pytest

from tests.harness.netns import ClientNamespace, Tbf
from tests.harness.throughput_runs import MEGABIT, TCP_GOODPUT, netcheck_in, server_on_root_side, throughput_in

pytestmark = [pytest.mark.slow, pytest.mark.netns]


LINKS = {"8/2": (8 * MEGABIT, 2 * MEGABIT), "1/0.5": (MEGABIT, MEGABIT // 2)}
"""down, up kbit/s of the tbf caps (100 ms queues)."""

BOUNDS_PCT = {
    # (link, --duration): (download, upload) = how far below cap × goodput a run may read, in %.
    # About 3× the median shortfall of `python benchmarks/throughput_accuracy.py --runs 5` and above
    # the worst of its runs (BENCHMARKS.md has the medians and ranges). 8/2 at 10 s downloads read
    # 0.45 % low (median; the loaded-RTT probe's 36 kbit/s is 0.45 % of 8 Mbit/s), −0.3…−1.1 % in 12
    # runs since the server stamps its count at the last acknowledgement; before, a count stamped when
    # read stretched the window by up to 50 ms: −0.1…−2.5 % in 16 runs here and −3.4 % once in CI.
    ("8/2", "10s"): (3.0, 7.0),
    ("8/2", "4s"): (10.0, 8.0),
    ("1/0.5", "4s"): (20.0, 25.0),
}
ABOVE_PCT = 3.0
"""A run may read this much above cap × goodput: the tbf bucket's initial burst and window edges;
more than that is a counting error, not the link."""


@pytest.mark.parametrize(("link", "duration"), list(BOUNDS_PCT))
def test_throughput_is_measured_close_to_the_tbf_cap(link: str, duration: str, tmp_path) -> None:
    """8/2 Mbit/s at 10 s, and the check's own 4 s window (2 s per direction) on 8/2 and on a slow
    1/0.5 Mbit/s link, where the loaded-RTT probe's own 36 kbit/s is 7 % of the uplink."""
    down_kbit, up_kbit = LINKS[link]
    with ClientNamespace(up=Tbf(up_kbit), down=Tbf(down_kbit)) as namespace:
        code, result, stderr = throughput_in(namespace, tmp_path, "--duration", duration)
    assert code == 0, stderr
    below_down, below_up = BOUNDS_PCT[link, duration]
    for measured, cap_kbit, below in ((result["download_mbps"], down_kbit, below_down),
                                      (result["upload_mbps"], up_kbit, below_up)):
        expected = cap_kbit / 1000 * TCP_GOODPUT
        error_pct = 100 * (measured / expected - 1)
        assert -below <= error_pct <= ABOVE_PCT, (link, duration, measured, expected, f"{error_pct:+.1f} %", result)
    assert result["bytes_down"] > 0 and result["bytes_up"] > 0


def test_deep_queue_shows_bufferbloat(tmp_path) -> None:
    deep = Tbf(2 * MEGABIT, limit_bytes=2 * MEGABIT * 1000 // 8)  # one second of queue
    with ClientNamespace(up=deep, down=Tbf(8 * MEGABIT, limit_bytes=8 * MEGABIT * 1000 // 8)) as namespace:
        code, result, stderr = throughput_in(namespace, tmp_path)
    assert code == 0, stderr
    # The uplink's queue is one second long and TCP fills it: 997 ms (996.5–997.7) in 5 runs.
    assert result["bufferbloat_ms"] == pytest.approx(1000, abs=10), result
    assert result["loaded_rtt_up_ms"] >= 300, result


def test_shallow_queue_keeps_bufferbloat_small(tmp_path) -> None:
    shallow = dict(burst_bytes=4000, limit_bytes=6000)  # a few packets: an AQM-like short queue
    with ClientNamespace(up=Tbf(8 * MEGABIT, **shallow), down=Tbf(8 * MEGABIT, **shallow)) as namespace:
        code, result, stderr = throughput_in(namespace, tmp_path)
    assert code == 0, stderr
    # 6 kB at 8 Mbit/s holds at most 6 ms (measured 4.3 ms, 3.8–4.3 in 5 runs); 3 ms for the timer
    # noise of the idle and loaded RTTs.
    assert result["bufferbloat_ms"] < 9, result


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
