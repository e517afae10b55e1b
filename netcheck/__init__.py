"""netcheck: can this connection carry the nonverbal cues of a video therapy session?

Holds: the data and the leaves at the root — `model` (levels, cues, measurements, the assessment, a
check's report and its one serializer), `results` (every probe's result), `errors`, `bounds` (every
setting's range), `config` (with its template, config_template.toml), `parse`, `stats`, `tokens`
(and a session's legs), and `check` (the pre-session check: probes and the model composed) — and one
package per part of the architecture (docs/design-notes.md, "The house", has the map).
May import: the root modules import each other (never `check`) and the standard library; `check` also
`probes`, `quality` and `net`; `config` also `quality` (the thresholds it overrides) and `av` (the
video format it validates). tests/test_house.py holds every package to the map.
"""

__version__ = "0.1.0"
