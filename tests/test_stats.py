"""Statistics against hand-computed values."""

import pytest

from netcheck import stats


def test_percentile_interpolates_like_numpy_type_7() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    # rank = (4 - 1) * 0.95 = 2.85 → 30 + 0.85 * 10
    assert stats.percentile(values, 95) == pytest.approx(38.5)
    assert stats.percentile(values, 50) == pytest.approx(25.0)
    assert stats.percentile(values, 0) == 10.0
    assert stats.percentile(values, 100) == 40.0
    assert stats.percentile([7.0], 95) == 7.0


def test_percentile_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)


def test_ipdv_uses_only_consecutive_sequence_numbers() -> None:
    # pairs (0,1): |12-10| = 2; (1,2): missing; (2,3): missing; (3,4): |11-15| = 4 → mean 3
    assert stats.ipdv_mean_ms([10.0, 12.0, None, 15.0, 11.0]) == pytest.approx(3.0)
    assert stats.ipdv_mean_ms([10.0, None, 12.0]) is None
    assert stats.ipdv_mean_ms([]) is None


def test_rfc3550_jitter_follows_the_recurrence() -> None:
    # J1 = 0 + (|12-10| - 0)/16 = 0.125; J2 = 0.125 + (|9-12| - 0.125)/16 = 0.3046875
    assert stats.rfc3550_jitter_ms([10.0, 12.0, 9.0]) == pytest.approx(0.3046875)
    assert stats.rfc3550_jitter_ms([10.0]) is None
    # a constant delay has no jitter
    assert stats.rfc3550_jitter_ms([5.0] * 100) == 0.0


def test_loss_burst_max() -> None:
    assert stats.loss_burst_max([True, False, False, True, False, False, False, True]) == 3
    assert stats.loss_burst_max([True, True]) == 0
    assert stats.loss_burst_max([False] * 4) == 4


def test_count_reordered_counts_late_arrivals() -> None:
    assert stats.count_reordered([0, 1, 2, 3]) == 0
    assert stats.count_reordered([0, 2, 1, 3]) == 1  # 1 arrived after 2
    assert stats.count_reordered([3, 0, 1, 2]) == 3


def test_loss_pct() -> None:
    assert stats.loss_pct(200, 194) == pytest.approx(3.0)
    assert stats.loss_pct(0, 0) == 0.0
    assert stats.loss_pct(10, 12) == 0.0  # never negative
