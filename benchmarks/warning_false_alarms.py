"""False warnings and detection time of the voice warning, simulated through the real alert code.

    python benchmarks/warning_false_alarms.py [--hours 20] [--trials 400] [--seed 1]
        [--packets-per-s 10] [--decide-nats 6] [--cap-ratio 1.25]

Each window's packets (sent for 80 % of the window, as the agent sends them) are lost at random
with a fixed probability; the window's verdicts come from the real quality model (`assess`, at
40 ms RTT and 2 ms jitter) and go through the real `AlertTracker`, once judged window by window
(packet counts withheld: how warnings were decided before) and once on the packets' loss
evidence. Reported: voice warnings raised per hour on paths whose loss is below or at the poor
line, and, over many trials, how long after 8 % loss starts (at a random moment) a warning is
raised, and after a minute of it ends, cleared.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netcheck.session.alerts import AlertTracker  # noqa: E402
from netcheck.session.loss_evidence import CAP_RATIO, DECIDE_NATS, LossEvidence, PacketCounts  # noqa: E402
from netcheck.model import Cue, Status  # noqa: E402
from netcheck.probes.udp import UdpResult  # noqa: E402
from netcheck.quality import assess  # noqa: E402

ACTIVE_SHARE = 0.8
DETECT_LOSS = 0.08
BELOW_THE_LINE = (0.005, 0.01, 0.02, 0.03)


@dataclass(frozen=True)
class Scenario:
    window_s: float
    packets_per_s: int
    weigh_packets: bool
    decide_nats: float
    cap_ratio: float

    @property
    def sent(self) -> int:
        return round(self.window_s * ACTIVE_SHARE * self.packets_per_s)

    def tracker(self) -> AlertTracker:
        tracker = AlertTracker("client")
        tracker.loss_evidence = LossEvidence(1.0, 3.0, self.decide_nats, self.cap_ratio)  # the cue table's bounds
        return tracker

    def window(self, tracker: AlertTracker, lost: int) -> set[str]:
        """Feed one window; the voice warning events it produced."""
        udp = UdpResult(status=Status.OK, packets_sent=self.sent, packets_received=self.sent - lost, rtt_min_ms=38.0,
                        rtt_mean_ms=40.0, rtt_p50_ms=40.0, rtt_p95_ms=43.0, rtt_max_ms=45.0, jitter_ms=2.0,
                        jitter_rfc3550_ms=1.5, jitter_up_ms=None, jitter_down_ms=None, loss_pct=100 * lost / self.sent,
                        loss_up_pct=None, loss_down_pct=None, loss_burst_max=min(lost, 1), duplicates=0, reordered=0)
        packets = PacketCounts(self.sent, lost) if self.weigh_packets else None
        return {event.kind for event in tracker.update(assess({"udp": udp}).cues, packets)
                if event.cue == Cue.VOCAL_TONE}


def raises_per_hour(scenario: Scenario, loss: float, hours: float, rng: random.Random) -> float:
    tracker = scenario.tracker()
    raises = 0
    for _ in range(int(hours * 3600 / scenario.window_s)):
        lost = sum(rng.random() < loss for _ in range(scenario.sent))
        raises += "warning_raised" in scenario.window(tracker, lost)
    return raises / hours


def lost_in_window(scenario: Scenario, start_s: float, lossy_from_s: float, lossy_until_s: float,
                   rng: random.Random) -> int:
    """Packets lost in the window starting at start_s, 8 % loss between the two moments."""
    times = (start_s + index / scenario.packets_per_s for index in range(scenario.sent))
    return sum(lossy_from_s <= at_s < lossy_until_s and rng.random() < DETECT_LOSS for at_s in times)


def detection_times(scenario: Scenario, trials: int, rng: random.Random) -> tuple[list, list]:
    """Seconds from loss start to the raise, and from loss end to the clear (None: not within a minute)."""
    window_s, forever = scenario.window_s, float("inf")
    per_minute = int(60 / window_s)
    raise_s, clear_s = [], []
    for _ in range(trials):
        tracker = scenario.tracker()
        for _ in range(6):
            scenario.window(tracker, 0)
        start_s = 6 * window_s
        loss_from_s = start_s + rng.random() * window_s
        raised_at_s = None
        for index in range(per_minute):
            begin_s = start_s + index * window_s
            if "warning_raised" in scenario.window(tracker, lost_in_window(scenario, begin_s, loss_from_s, forever, rng)):
                raised_at_s = begin_s + window_s
                break
        raise_s.append(None if raised_at_s is None else raised_at_s - loss_from_s)
        if raised_at_s is None:
            continue
        for index in range(per_minute):  # a minute more of loss
            scenario.window(tracker, lost_in_window(scenario, raised_at_s + index * window_s, 0.0, forever, rng))
        if Cue.VOCAL_TONE not in tracker.active:
            continue  # cleared under loss by a lucky run of windows: not a clear after the loss
        end_s = raised_at_s + per_minute * window_s
        loss_until_s = end_s + rng.random() * window_s
        cleared_at_s = None
        for index in range(per_minute):
            begin_s = end_s + index * window_s
            if "warning_cleared" in scenario.window(tracker, lost_in_window(scenario, begin_s, 0.0, loss_until_s, rng)):
                cleared_at_s = begin_s + window_s
                break
        clear_s.append(None if cleared_at_s is None else cleared_at_s - loss_until_s)
    return raise_s, clear_s


def describe(times: list, within_s: float) -> str:
    done = sorted(t for t in times if t is not None)
    if not done:
        return "never"
    share = 100 * sum(t <= within_s for t in done) / len(times)
    return (f"median {statistics.median(done):.1f} s, p95 {done[int(0.95 * (len(done) - 1))]:.1f} s, "
            f"≤ {within_s:g} s in {share:.0f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=20.0)
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--packets-per-s", type=int, nargs="+", default=[10, 25])
    parser.add_argument("--decide-nats", type=float, default=DECIDE_NATS, help="the evidence's decision line to try")
    parser.add_argument("--cap-ratio", type=float, default=CAP_RATIO, help="the evidence's cap to try, × the line")
    arguments = parser.parse_args()
    rng = random.Random(arguments.seed)
    print("| window, packets/s | judged | raises/h at 0.5 % | 1 % | 2 % | 3 % | 8 % → raised | clean → cleared |")
    print("|---|---|---:|---:|---:|---:|---|---|")
    for packets_per_s in arguments.packets_per_s:
        for window_s in (5.0, 2.0):
            for weigh_packets in (False, True):
                scenario = Scenario(window_s, packets_per_s, weigh_packets, arguments.decide_nats, arguments.cap_ratio)
                rates = [raises_per_hour(scenario, loss, arguments.hours, rng) for loss in BELOW_THE_LINE]
                raise_s, clear_s = detection_times(scenario, arguments.trials, rng)
                judged = "loss evidence" if weigh_packets else "window by window"
                print(f"| {window_s:g} s, {packets_per_s} | {judged} | " + " | ".join(f"{rate:.1f}" for rate in rates)
                      + f" | {describe(raise_s, 15)} | {describe(clear_s, 25)} |", flush=True)


if __name__ == "__main__":
    main()
