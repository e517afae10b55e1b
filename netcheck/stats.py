"""Pure statistics over probe samples, tested against hand-computed values.

Sequences of per-packet RTTs are indexed by sequence number, with None for a packet that
never came back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolation percentile (NumPy's default, 'type 7'); `pct` in 0..100."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"percentile {pct} outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of no values")
    return math.fsum(values) / len(values)


def ipdv_mean_ms(delay_by_seq_ms: Sequence[float | None]) -> float | None:
    """Mean |Δdelay| over consecutive sequence numbers both received (RFC 3393 IPDV, as irtt).

    The delays may be round trips or one-way delays between two clocks: a constant offset between
    the clocks cancels in each difference."""
    deltas = [
        abs(current - previous)
        for previous, current in zip(delay_by_seq_ms, delay_by_seq_ms[1:])
        if previous is not None and current is not None
    ]
    return mean(deltas) if deltas else None


def rfc3550_jitter_ms(rtt_in_arrival_order_ms: Sequence[float]) -> float | None:
    """RFC 3550 §6.4.1 interarrival jitter, J += (|D| − J)/16, over RTTs in arrival order.

    On a round trip the sender's and receiver's clocks cancel, so D is the RTT difference
    of consecutive arrivals.
    """
    if len(rtt_in_arrival_order_ms) < 2:
        return None
    jitter = 0.0
    for previous, current in zip(rtt_in_arrival_order_ms, rtt_in_arrival_order_ms[1:]):
        jitter += (abs(current - previous) - jitter) / 16.0
    return jitter


def loss_burst_max(received: Sequence[bool]) -> int:
    """The longest run of consecutive lost packets."""
    longest = run = 0
    for ok in received:
        run = 0 if ok else run + 1
        longest = max(longest, run)
    return longest


def count_reordered(seqs_in_arrival_order: Sequence[int]) -> int:
    """Arrivals whose sequence number is lower than one already received (late packets, as irtt)."""
    highest = -1
    late = 0
    for seq in seqs_in_arrival_order:
        if seq < highest:
            late += 1
        else:
            highest = seq
    return late


def loss_pct(expected: int, received: int) -> float:
    """Percentage of `expected` packets that did not arrive; 0 when nothing was expected."""
    if expected <= 0:
        return 0.0
    return max(0.0, 100.0 * (expected - received) / expected)
