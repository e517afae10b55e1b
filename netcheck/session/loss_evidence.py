"""Evidence, packet by packet, that a path's loss is above the poor line — not just a bad draw.

A 5 s window of the agent carries 40 packets, so "more than 3 % lost" is a count of 2, which a
path with 1 % loss draws in 6 % of windows and one with 2 % in 19 %: judged window by window,
such paths raised a warning every few minutes (docs/session-hub.md). Page's CUSUM on the packets
instead weighs every packet: each loss adds ln(p_poor/p_good), each arrival adds
ln((1 − p_poor)/(1 − p_good)) (negative), and the sum, floored at 0, crosses the decision line
only when losses keep coming faster than the poor line (the agent knows counts per window, not
the order of packets within one, so the sum moves once per window). The two rates come from the cue
table: p_good is the "good" bound, p_poor is chosen so that the sum drifts up exactly when the
true loss is above the "fair" bound — a clinic's override of the loss thresholds moves both.
Pure: counts in, a decision out.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

DECIDE_NATS = 6.0
"""Evidence at which loss counts as poor (natural-log likelihood ratio); see BENCHMARKS.md for
what it costs in detection time and buys in false warnings."""
CAP_RATIO = 1.25
"""The evidence never exceeds this × the decision line, so a long outage does not keep a warning
up for minutes after the path is clean again."""
RECENT_WINDOWS = 3


@dataclass(frozen=True)
class PacketCounts:
    """Packets one window sent and lost (lost = sent − answered)."""

    sent: int
    lost: int


def neutral_loss_pct(good_pct: float, poor_pct: float) -> float:
    """The true loss at which the evidence neither grows nor shrinks, for reference rates good/poor."""
    p0, p1 = good_pct / 100, poor_pct / 100
    per_arrival = math.log((1 - p1) / (1 - p0))
    return 100 * -per_arrival / (math.log(p1 / p0) - per_arrival)


def poor_reference_pct(good_pct: float, fair_limit_pct: float) -> float:
    """The poor reference rate that puts the neutral point on the fair limit (bisection)."""
    if not 0 < good_pct < fair_limit_pct < 50:
        raise ValueError(f"loss bounds must satisfy 0 < good ({good_pct}) < fair ({fair_limit_pct}) < 50")
    low, high = fair_limit_pct, 99.0
    for _ in range(60):
        middle = (low + high) / 2
        if neutral_loss_pct(good_pct, middle) < fair_limit_pct:
            low = middle
        else:
            high = middle
    return (low + high) / 2


class LossEvidence:
    """The CUSUM of one leg's packets, and the recent loss to quote in a warning."""

    def __init__(self, good_pct: float, fair_limit_pct: float, decide_nats: float = DECIDE_NATS,
                 cap_ratio: float = CAP_RATIO) -> None:
        p0, p1 = good_pct / 100, poor_reference_pct(good_pct, fair_limit_pct) / 100
        self.per_loss_nats = math.log(p1 / p0)
        self.per_arrival_nats = math.log((1 - p1) / (1 - p0))
        self.decide_nats = decide_nats
        self.cap_nats = cap_ratio * decide_nats
        self.nats = 0.0
        self._recent: deque[PacketCounts] = deque(maxlen=RECENT_WINDOWS)

    def add(self, counts: PacketCounts) -> None:
        arrived = max(0, counts.sent - counts.lost)
        step = counts.lost * self.per_loss_nats + arrived * self.per_arrival_nats
        self.nats = min(self.cap_nats, max(0.0, self.nats + step))
        self._recent.append(counts)

    @property
    def poor(self) -> bool:
        return self.nats >= self.decide_nats

    @property
    def recent_windows(self) -> int:
        return len(self._recent)

    @property
    def recent_loss_pct(self) -> float | None:
        """Loss over the last few windows: the figure a warning quotes."""
        sent = sum(counts.sent for counts in self._recent)
        return 100 * sum(counts.lost for counts in self._recent) / sent if sent else None
