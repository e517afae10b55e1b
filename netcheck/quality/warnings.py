"""The words of in-call warnings: which cue is affected, for whose leg, and what the therapist can do.

Written for a therapist in a session: one calm sentence on the clinical effect, one on what to
do. Transmission delay is easily misread as the other person's hesitation or coldness
(Schoenenberg et al. 2014), so the timing warning says so. The sentences are the metric
registry's (`Metric.warning`, `CueWords`). Pure.

Every sentence a therapist reads is written here, from a warning's cue, metric and value: an
agent posts those fields, never the words (a client's agent could otherwise put any text, a
phone number or a script, in front of the therapist); session/events.py checks those fields.
"""

from __future__ import annotations

from netcheck.model import Cue
from netcheck.quality.metrics import CUE_WORDS, METRIC_BY_NAME

GENERIC_RAISED = "{Whose} connection is poor for {cue}."


def warning_text(raised: bool, cue: Cue, leg: str, metric: str | None, value: float | None) -> tuple[str, str]:
    """(message, advice) for a warning raised or cleared on `leg`'s connection.

    The watching therapist reads "the client's …" for the client's leg and "your …" for their own.
    """
    whose = "your" if leg == "therapist" else f"the {leg}'s"
    words = {"Whose": whose[0].upper() + whose[1:], "whose_lower": whose,
             "they": "you" if leg == "therapist" else f"the {leg}", "cue": CUE_WORDS[cue].name}
    if not raised:
        return CUE_WORDS[cue].cleared.format(**words), ""
    row = METRIC_BY_NAME.get(metric or "")
    if row is None or row.cue != cue:
        return GENERIC_RAISED.format(**words), _capitalised(CUE_WORDS[cue].therapist_advice.format(**words))
    figure = row.warning_figure.format(value=value) if value is not None else ""
    return row.warning.format(figure=figure, **words), _capitalised(CUE_WORDS[cue].therapist_advice.format(**words))


def _capitalised(text: str) -> str:
    return text[0].upper() + text[1:]
