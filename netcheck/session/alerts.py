"""In-call warnings: a hysteresis per cue, so a therapist is not interrupted by flapping (DESIGN §5).

Raise when a cue is poor in 2 of the last 3 windows; clear after 3 windows in a row that are good
or fair. A window in which the cue is unknown (not measured) is skipped: it neither raises nor
clears. Pure: windows' verdicts in, events out; the agent stores and sends them.

Packet loss is a count, too coarse in one window to call a path poor: when the agent passes the
window's packet counts, the loss-driven metrics (loss_one_way_pct, and the MOS computed from it) are poor
only when the packets' cumulative evidence says so (netcheck/session/loss_evidence.py). That evidence is
a hysteresis of its own, weighed over many windows' packets, so its crossing raises at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from netcheck.session.loss_evidence import LossEvidence, PacketCounts
from netcheck.model import Cue, CueVerdict, Level
from netcheck.quality.assess import SEVERITY
from netcheck.quality.metrics import METRICS, Metric
from netcheck.quality.warnings import warning_text

RAISE_POOR_WINDOWS = 2
RAISE_OUT_OF = 3
CLEAR_AFTER_WINDOWS = 3
LOSS_DRIVEN_METRICS = frozenset({"loss_one_way_pct", "mos"})


@dataclass(frozen=True)
class WarningEvent:
    """A warning raised or cleared for one cue of one leg."""

    kind: str
    """`warning_raised` or `warning_cleared`."""
    cue: Cue
    level: Level
    """The cue's level in the window that decided the event."""
    metric: str | None
    value: float | None
    message: str
    advice: str


@dataclass
class CueState:
    recent_poor: deque[bool] = field(default_factory=lambda: deque(maxlen=RAISE_OUT_OF))
    raised: bool = False
    not_poor_in_a_row: int = 0


class AlertTracker:
    """The warning state of one leg (`client` or `therapist`) across windows."""

    def __init__(self, leg: str, thresholds: Sequence[Metric] = METRICS) -> None:
        self.leg = leg
        self.states = {cue: CueState() for cue in Cue}
        self.loss_evidence = loss_evidence_for(thresholds)

    @property
    def active(self) -> list[Cue]:
        return [cue for cue, state in self.states.items() if state.raised]

    def update(self, cues: Mapping[Cue, CueVerdict], packets: PacketCounts | None = None) -> list[WarningEvent]:
        """Feed one window's per-cue verdicts (and its probe's packet counts); returns the warnings it
        raises or clears."""
        evidence = self.loss_evidence if packets is not None and packets.sent > 0 else None
        if evidence is not None and packets is not None:
            evidence.add(packets)
        events = []
        for cue, verdict in cues.items():
            if verdict.level == Level.UNKNOWN:
                continue
            judges_loss = any(metric.metric in LOSS_DRIVEN_METRICS for metric in verdict.metrics)
            if evidence is not None and judges_loss:
                verdict = _judged_on_loss_evidence(verdict, evidence)
            state = self.states[cue]
            poor = verdict.level == Level.POOR
            poor_on_loss_evidence = evidence is not None and judges_loss and evidence.poor
            state.recent_poor.append(poor)
            state.not_poor_in_a_row = 0 if poor else state.not_poor_in_a_row + 1
            if not state.raised and (sum(state.recent_poor) >= RAISE_POOR_WINDOWS or poor_on_loss_evidence):
                state.raised = True
                events.append(self._event("warning_raised", verdict))
            elif state.raised and state.not_poor_in_a_row >= CLEAR_AFTER_WINDOWS:
                state.raised = False
                state.recent_poor.clear()
                events.append(self._event("warning_cleared", verdict))
        return events

    def _event(self, kind: str, verdict: CueVerdict) -> WarningEvent:
        metric = verdict.deciding.metric if verdict.deciding else None
        value = verdict.deciding.value if verdict.deciding else None
        message, advice = warning_text(kind == "warning_raised", verdict.cue, self.leg, metric, value)
        return WarningEvent(kind, verdict.cue, verdict.level, metric, value, message, advice)


def loss_evidence_for(thresholds: Sequence[Metric]) -> LossEvidence | None:
    """Evidence weighed against the cue table's loss bounds; None (loss judged window by window)
    where a clinic's bounds leave no room for it (good 0 %, good = fair, fair ≥ 50 %)."""
    loss = next((t for t in thresholds if t.name == "loss_one_way_pct"), None)
    if loss is None or not isinstance(loss.good, (int, float)) or not isinstance(loss.fair, (int, float)):
        return None
    if not 0 < loss.good < loss.fair < 50:
        return None
    return LossEvidence(float(loss.good), float(loss.fair))


def _judged_on_loss_evidence(verdict: CueVerdict, evidence: LossEvidence) -> CueVerdict:
    """The cue as the alerts see it: its loss-driven metrics poor only on the packets' evidence."""
    metrics = []
    for metric in verdict.metrics:
        if metric.metric == "loss_one_way_pct" and evidence.poor:
            metric = replace(metric, level=Level.POOR, value=_round(evidence.recent_loss_pct),
                             source=f"{metric.source}, last {evidence.recent_windows} windows")
        elif metric.metric in LOSS_DRIVEN_METRICS and metric.level == Level.POOR:
            metric = replace(metric, level=Level.FAIR)
        metrics.append(metric)
    judged = [metric for metric in metrics if metric.level in SEVERITY]
    if not judged:
        return verdict
    deciding = max(judged, key=lambda metric: SEVERITY[metric.level])  # the first of the worst, as assess does
    return replace(verdict, level=deciding.level, metrics=tuple(metrics), deciding=deciding)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
