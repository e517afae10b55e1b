"""ITU-T G.107 E-model (simplified): R-factor and MOS from delay and packet loss.

Simplifications, all documented in docs/quality-model.md:
- Ro − Is at their G.107 defaults (93.2 with no impairment), echo terms negligible
  (modern endpoints cancel echo), so R = 93.2 − Idd − Ie,eff.
- The codec is G.711 with packet-loss concealment (G.113 Appendix I: Ie = 0, Bpl = 25.1),
  a conservative stand-in for Opus, which G.113 does not list.
"""

from __future__ import annotations

import math

R_DEFAULT = 93.2
IE_G711_PLC = 0.0
BPL_G711_PLC = 25.1
ENDPOINT_DELAY_MS = 80.0
"""Capture, encoding, packetisation, a clean path's jitter buffer, decoding and playout: one way,
both ends together (docs/quality-model.md itemises it)."""
JITTER_BUFFER_FACTOR = 2.0
"""An adaptive jitter buffer holds about twice the mean jitter."""


def delay_impairment_idd(one_way_delay_ms: float) -> float:
    """G.107 §7.3 Idd: zero up to 100 ms mouth-to-ear, then growing with log2(Ta/100)."""
    if one_way_delay_ms <= 100.0:
        return 0.0
    x = math.log10(one_way_delay_ms / 100.0) / math.log10(2.0)
    return 25.0 * ((1.0 + x**6) ** (1 / 6) - 3.0 * (1.0 + (x / 3.0) ** 6) ** (1 / 6) + 2.0)


def effective_equipment_impairment(
    loss_pct: float, burst_ratio: float = 1.0, ie: float = IE_G711_PLC, bpl: float = BPL_G711_PLC
) -> float:
    """G.107 §7.4 Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl / BurstR + Bpl)."""
    if loss_pct <= 0.0:
        return ie
    return ie + (95.0 - ie) * loss_pct / (loss_pct / burst_ratio + bpl)


def r_factor(one_way_delay_ms: float, loss_pct: float, burst_ratio: float = 1.0) -> float:
    return R_DEFAULT - delay_impairment_idd(one_way_delay_ms) - effective_equipment_impairment(loss_pct, burst_ratio)


def mos_from_r(r: float) -> float:
    """G.107 Annex B: MOS_CQE from R."""
    if r <= 0.0:
        return 1.0
    if r >= 100.0:
        return 4.5
    return 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6


def mouth_to_ear_delay_ms(one_way_network_ms: float, jitter_ms: float) -> float:
    """One-way network delay plus the endpoints' budget plus the jitter buffer (2 × one-way jitter)."""
    return one_way_network_ms + ENDPOINT_DELAY_MS + JITTER_BUFFER_FACTOR * jitter_ms


def mos(one_way_network_ms: float, jitter_ms: float, loss_pct: float, burst_ratio: float = 1.0) -> float:
    """Expected listening-and-talking quality of a voice call over this path, 1..4.5.

    Every figure is one way, as G.107 defines its inputs: a voice travels one way (the worse
    direction's loss and jitter; half the round trip for the delay)."""
    return mos_from_r(r_factor(mouth_to_ear_delay_ms(one_way_network_ms, jitter_ms), loss_pct, burst_ratio))
