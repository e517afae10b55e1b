"""End-to-end estimate from two legs: hand-computed sums, compounded losses and their levels."""

from __future__ import annotations

from typing import Any

import pytest

from netcheck.model import Level
from netcheck.quality.end_to_end import compound_loss_pct, end_to_end
from netcheck.quality.metrics import METRICS
from netcheck.quality.thresholds import apply_overrides


def summary(**figures: Any) -> dict[str, Any]:
    return {"type": "summary", "leg": "client", "at": "2026-11-27T20:00:05.000+00:00",
            "window": {"index": 1, "figures": figures}}


def test_delays_add_and_one_way_is_half_the_round_trip() -> None:
    estimate = end_to_end(summary(rtt_p95_ms=48.0), summary(rtt_p95_ms=30.0))
    assert estimate.rtt_p95_ms.value == pytest.approx(78.0)
    assert estimate.one_way_ms.value == pytest.approx(39.0)
    assert estimate.rtt_p95_ms.level == estimate.one_way_ms.level == Level.GOOD
    assert estimate.rtt_p95_ms.unit == "ms"


def test_two_fair_delays_make_a_poor_conversation() -> None:
    # 120 ms and 140 ms are each good (≤ 140 ms); together 260 ms is poor (> 240 ms)
    estimate = end_to_end(summary(rtt_p95_ms=120), summary(rtt_p95_ms=140))
    assert estimate.rtt_p95_ms.value == pytest.approx(260.0)
    assert estimate.one_way_ms.value == pytest.approx(130.0)
    assert estimate.rtt_p95_ms.level == estimate.one_way_ms.level == Level.POOR


def test_losses_compound() -> None:
    # 1 − 0.975 × 0.99 = 0.03475: a fair and a good leg make a poor call (> 3 %)
    assert compound_loss_pct(2.5, 1.0) == pytest.approx(3.475)
    estimate = end_to_end(summary(loss_one_way_pct=2.5), summary(loss_one_way_pct=1.0))
    assert estimate.loss_pct.value == pytest.approx(3.475)
    assert estimate.loss_pct.level == Level.POOR
    # 1 − 0.995 × 0.996 = 0.00898 → 0.898 %, still good (< 1 %)
    small = end_to_end(summary(loss_one_way_pct=0.5), summary(loss_one_way_pct=0.4))
    assert small.loss_pct.value == pytest.approx(0.898)
    assert small.loss_pct.level == Level.GOOD


def test_compounded_loss_stays_within_0_and_100_pct() -> None:
    assert compound_loss_pct(0.0, 0.0) == 0.0
    assert compound_loss_pct(100.0, 0.0) == pytest.approx(100.0)
    assert compound_loss_pct(250.0, 10.0) == pytest.approx(100.0)  # a hostile figure is clamped


@pytest.mark.parametrize(("a_ms", "b_ms", "level"), [
    (3.1, 12.0, Level.GOOD),   # 15.1 ≤ 20
    (20.0, 20.0, Level.FAIR),  # 40 ≤ 40
    (25.0, 20.0, Level.POOR),  # 45 > 40
])
def test_jitter_adds_as_an_upper_bound(a_ms: float, b_ms: float, level: Level) -> None:
    estimate = end_to_end(summary(jitter_one_way_ms=a_ms), summary(jitter_one_way_ms=b_ms))
    assert estimate.jitter_ms.value == pytest.approx(a_ms + b_ms)
    assert estimate.jitter_ms.level == level


def test_a_missing_leg_or_figure_is_unknown() -> None:
    full = summary(rtt_p95_ms=48.0, loss_one_way_pct=0.0, jitter_one_way_ms=3.0)
    for estimate in (end_to_end(full, None), end_to_end(None, full),
                     end_to_end(full, summary(rtt_p95_ms=None, loss_one_way_pct=None, jitter_one_way_ms=None)),
                     end_to_end(full, {"type": "summary", "window": "garbage"})):
        for figure in estimate.figures():
            assert figure.value is None
            assert figure.level == Level.UNKNOWN


def test_figures_that_are_not_finite_non_negative_numbers_are_ignored() -> None:
    for bad in (True, "48", float("nan"), float("inf"), -5.0):
        estimate = end_to_end(summary(rtt_p95_ms=48.0), summary(rtt_p95_ms=bad))
        assert estimate.rtt_p95_ms.value is None


def test_a_clinics_thresholds_judge_the_estimate() -> None:
    strict = apply_overrides(METRICS, {"rtt_p95_ms": {"good": 50, "fair": 70}})
    estimate = end_to_end(summary(rtt_p95_ms=48.0), summary(rtt_p95_ms=30.0), strict)
    assert estimate.rtt_p95_ms.level == Level.POOR  # 78 ms > 70 ms


def test_loss_and_jitter_join_one_legs_upstream_to_the_others_downstream() -> None:
    """Client → therapist is client up + therapist down; the worse of the two paths is judged."""
    client = summary(loss_up_pct=2.0, loss_down_pct=0.0, jitter_up_ms=15.0, jitter_down_ms=1.0)
    therapist = summary(loss_up_pct=0.0, loss_down_pct=1.5, jitter_up_ms=2.0, jitter_down_ms=10.0)
    estimate = end_to_end(client, therapist)
    assert estimate.loss_pct.value == pytest.approx(compound_loss_pct(2.0, 1.5))  # not 2 + 1.5 + 0 + 0 compounded
    assert estimate.jitter_ms.value == pytest.approx(25.0)  # client up 15 + therapist down 10
    assert estimate.loss_pct.level == Level.POOR and estimate.jitter_ms.level == Level.FAIR
