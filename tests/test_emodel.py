"""The E-model against ITU-T G.107 published values and hand-computed ones."""

import pytest

from netcheck.quality import emodel


@pytest.mark.parametrize(
    ("r", "published_mos"),
    # G.107 Annex B, the R → MOS mapping as tabulated in G.107 / G.109 (user satisfaction bands)
    [(93.2, 4.41), (90.0, 4.34), (80.0, 4.02), (70.0, 3.60), (60.0, 3.10), (50.0, 2.58)],
)
def test_mos_from_r_matches_published_values(r: float, published_mos: float) -> None:
    assert emodel.mos_from_r(r) == pytest.approx(published_mos, abs=0.006)


def test_mos_is_clamped() -> None:
    assert emodel.mos_from_r(-5.0) == 1.0
    assert emodel.mos_from_r(120.0) == 4.5


def test_default_r_without_impairments_is_93_2() -> None:
    assert emodel.r_factor(one_way_delay_ms=50.0, loss_pct=0.0) == pytest.approx(93.2)


def test_delay_impairment_hand_computed() -> None:
    assert emodel.delay_impairment_idd(100.0) == 0.0
    # Ta = 200 ms: X = 1; Idd = 25 * (2^(1/6) - 3 * (1 + 3^-6)^(1/6) + 2)
    x_term = 2 ** (1 / 6) - 3 * (1 + 3**-6) ** (1 / 6) + 2
    assert emodel.delay_impairment_idd(200.0) == pytest.approx(25 * x_term)
    assert emodel.delay_impairment_idd(200.0) == pytest.approx(3.04, abs=0.01)
    # Ta = 400 ms: X = 2; Idd = 25 * (65^(1/6) - 3 * (1 + (2/3)^6)^(1/6) + 2) ≈ 24.07
    assert emodel.delay_impairment_idd(400.0) == pytest.approx(24.07, abs=0.01)


def test_effective_equipment_impairment_for_g711_with_plc() -> None:
    # G.113 Appendix I: Ie = 0, Bpl = 25.1. Ppl = 2 %, random loss: 95 * 2 / (2 + 25.1)
    assert emodel.effective_equipment_impairment(2.0) == pytest.approx(95 * 2 / 27.1)
    assert emodel.effective_equipment_impairment(0.0) == 0.0
    # bursty loss (BurstR = 2) hurts more than random loss at the same rate
    assert emodel.effective_equipment_impairment(2.0, burst_ratio=2.0) > emodel.effective_equipment_impairment(2.0)


def test_mos_of_paths_used_by_the_verdict_tests() -> None:
    clean = emodel.mos(one_way_network_ms=0.5, jitter_ms=0.1, loss_pct=0.0)
    assert clean == pytest.approx(4.41, abs=0.01)
    # 300 ms RTT: Ta = 150 + 80 + 2·jitter ≈ 234 ms → still a good voice, timing is what suffers
    assert 4.0 < emodel.mos(one_way_network_ms=150.0, jitter_ms=2.0, loss_pct=0.0) < clean
    # 6 % random loss: Ie,eff = 95·6/31.1 = 18.3 → R = 74.9 → MOS ≈ 3.82
    assert emodel.mos(one_way_network_ms=0.5, jitter_ms=0.1, loss_pct=6.0) == pytest.approx(3.82, abs=0.01)
