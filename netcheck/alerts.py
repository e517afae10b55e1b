"""In-call warnings: a hysteresis per cue, so a therapist is not interrupted by flapping (DESIGN §5).

Raise when a cue is poor in 2 of the last 3 windows; clear after 3 windows in a row that are good
or fair. A window in which the cue is unknown (not measured) is skipped: it neither raises nor
clears. Pure: windows' verdicts in, events out; the agent stores and sends them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from netcheck.model import Cue, CueVerdict, Level
from netcheck.quality.warnings import warning_text

RAISE_POOR_WINDOWS = 2
RAISE_OUT_OF = 3
CLEAR_AFTER_WINDOWS = 3


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

    def __init__(self, leg: str) -> None:
        self.leg = leg
        self.states = {cue: CueState() for cue in Cue}

    @property
    def active(self) -> list[Cue]:
        return [cue for cue, state in self.states.items() if state.raised]

    def update(self, cues: Mapping[Cue, CueVerdict]) -> list[WarningEvent]:
        """Feed one window's per-cue verdicts; returns the warnings it raises or clears."""
        events = []
        for cue, verdict in cues.items():
            if verdict.level == Level.UNKNOWN:
                continue
            state = self.states[cue]
            poor = verdict.level == Level.POOR
            state.recent_poor.append(poor)
            state.not_poor_in_a_row = 0 if poor else state.not_poor_in_a_row + 1
            if not state.raised and sum(state.recent_poor) >= RAISE_POOR_WINDOWS:
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
