"""The live watch view: both legs side by side, the estimate between them, warnings with advice.

Built to be read at a glance during a session, in an 80x24 terminal: colour carries the level,
words carry it too (for colour-blind readers and plain terminals). Everything from the network
goes into Text objects, never into markup, so a peer cannot style or inject.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from netcheck.quality.end_to_end import EndToEndFigure, end_to_end
from netcheck.quality.metrics import CUE_WORDS, METRICS, Metric
from netcheck.session.watch import ConnectionStatus, WatchState, WindowPoint, is_call
from netcheck.tokens import LEGS

LEVEL_STYLE = {"good": "green", "fair": "yellow", "poor": "bold red", "unknown": "dim"}
CUES = tuple((cue.value, words.short) for cue, words in CUE_WORDS.items())
LEG_TITLES = {"client": "client", "therapist": "you (therapist)"}
METRIC_NAMES = {metric.name: metric.short_label for metric in METRICS}
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 20
SPARK_FLOOR_MS = 100.0
"""Scale the delay sparkline to at least the 'good' bound, so a good line stays low."""
MAX_WARNINGS_SHOWN = 3
STALE_AFTER_S = 30.0


def render_watch(state: WatchState, status: ConnectionStatus, session_id: str,
                 thresholds: tuple[Metric, ...] = METRICS) -> RenderableType:
    legs = Table.grid(expand=True, padding=(0, 1))
    legs.add_column(ratio=1)
    legs.add_column(ratio=1)
    legs.add_row(*(leg_panel(state, leg) for leg in LEGS))
    return Group(status_line(state, status, session_id), legs,
                 end_to_end_line(state, thresholds), *warning_lines(state))


def status_line(state: WatchState, status: ConnectionStatus, session_id: str) -> Text:
    """One line; on a narrow terminal the end of the reconnect reason is what gets cut."""
    line = Text.assemble(("netcheck watch", "bold"), f" · {_cut(session_id, 24)} · ", no_wrap=True,
                         overflow="ellipsis")
    age_s = state.last_event_age_s()
    line.append("no event yet · " if age_s is None else f"last event {_age(age_s)} ago · ", style="dim")
    if status.state == "connected":
        line.append("● connected", style="green")
        return line
    line.append(f"◌ {status.state}", style="yellow")
    if status.retry_in_s is not None:
        line.append(f" in {status.retry_in_s:g} s", style="yellow")
    if status.detail:
        line.append(f" ({status.detail})", style="yellow")
    return line


def leg_panel(state: WatchState, leg: str) -> Panel:
    summary = state.summaries.get(leg)
    title = LEG_TITLES[leg]
    if summary is None:
        body: RenderableType = Text("waiting for this leg's agent…", style="dim")
        return Panel(body, title=title, title_align="left", border_style="dim")
    window = summary["window"]
    cues = window.get("cues") if isinstance(window.get("cues"), dict) else {}
    rows = Table.grid(padding=(0, 1))
    rows.add_column(width=13, no_wrap=True)
    rows.add_column(width=7, no_wrap=True)
    rows.add_column(no_wrap=True, overflow="ellipsis")
    for cue, label in CUES:
        verdict = cues.get(cue) if isinstance(cues.get(cue), dict) else {}
        level = _level(verdict.get("level"))
        rows.add_row(label, Text(level, style=LEVEL_STYLE[level]), Text(deciding_figure(verdict)))
    trend = Text.assemble(("delay trend  ", "dim"), sparkline(state.history[leg]))
    probe = state.probe_summaries.get(leg) if is_call(summary) else None
    if probe is not None:  # the call leads; the probe's verdict stays beside it
        path_level = _level(probe["window"].get("level"))
        trend = Group(trend, Text.assemble(("path to the clinic: ", "dim"), (path_level, LEVEL_STYLE[path_level])))
    if is_call(summary):
        title = f"{title} · on the call"
    level = _level(window.get("level"))
    subtitle = Text.assemble(("use: ", "dim"), (str(window.get("recommendation", "?")).replace("_", " "),
                                                 LEVEL_STYLE[level]))
    age_s = state.summary_age_s(leg)
    if age_s is not None and age_s > STALE_AFTER_S:
        subtitle.append(f" · no update for {_age(age_s)}", style="bold yellow")
    border = {"good": "green", "fair": "yellow", "poor": "red"}.get(level, "dim")
    return Panel(Group(rows, trend), title=title, title_align="left", subtitle=subtitle, subtitle_align="left",
                 border_style=border)


def deciding_figure(verdict: Mapping[str, Any]) -> str:
    """'29.8 fps', 'loss 2.5 %', 'delay 48 ms'; '–' when the cue was not measured."""
    value = verdict.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–"
    metric = str(verdict.get("deciding_metric") or "")
    unit = str(verdict.get("unit") or "")
    name = METRIC_NAMES.get(metric, "")
    number = f"{value:+.0f}" if metric == "av_skew_ms" else _number(float(value))
    return " ".join(part for part in (name, number, unit) if part)


def sparkline(points: Iterable[WindowPoint], width: int = SPARK_WIDTH) -> Text:
    """The delay of the last windows as bar heights, each bar coloured by that window's level."""
    recent = list(points)[-width:]
    delays = [point.rtt_p95_ms for point in recent if point.rtt_p95_ms is not None]
    top_ms = max([SPARK_FLOOR_MS, *delays])
    line = Text()
    for point in recent:
        if point.rtt_p95_ms is None:
            line.append("·", style="dim")
            continue
        index = min(len(SPARK_BLOCKS) - 1, int(point.rtt_p95_ms / top_ms * (len(SPARK_BLOCKS) - 1) + 0.5))
        line.append(SPARK_BLOCKS[max(0, index)], style=LEVEL_STYLE[point.level])
    return line


def end_to_end_line(state: WatchState, thresholds: tuple[Metric, ...]) -> Text:
    # the probes' halves (each person to the clinic) add up; a call's figures are the whole way already
    estimate = end_to_end(state.probe_summaries.get("client"), state.probe_summaries.get("therapist"), thresholds)
    line = Text("Client ↔ you, est.: ", style="bold")
    _append_figure(line, "delay ", estimate.rtt_p95_ms)
    if estimate.one_way_ms.value is not None:
        line.append(f" (≈{estimate.one_way_ms.value:.0f} one way)", style=LEVEL_STYLE[estimate.one_way_ms.level.value])
    line.append(" · ")
    _append_figure(line, "loss ", estimate.loss_pct)
    line.append(" · ")
    _append_figure(line, "jitter ≤ ", estimate.jitter_ms)
    return line


def warning_lines(state: WatchState) -> list[RenderableType]:
    """Active warnings, newest last, each with its advice under it; else the latest all-clear."""
    active = list(state.active.values())
    if not active:
        lines: list[RenderableType] = [Text("No warnings.", style="green")]
        cleared = next((event for event in reversed(state.warnings) if event["type"] == "warning_cleared"), None)
        if cleared is not None:
            lines.append(Text(f"✓ {cleared['message']}", style="dim"))
        return lines
    grid = Table.grid()
    grid.add_column(width=2, no_wrap=True)
    grid.add_column()
    # poor before fair, then the newest: what matters now, within the 24 lines of a small terminal
    shown = sorted(enumerate(active), key=lambda item: (item[1].get("level") == "poor", item[0]))[-MAX_WARNINGS_SHOWN:]
    advice_shown = set()
    for _, event in reversed(shown):
        style = "bold red" if event.get("level") == "poor" else "bold yellow"
        line = Text(event["message"], style=style)
        if is_call(event):
            line.append(" (on the call)", style="dim")
        grid.add_row(Text("⚠", style=style), line)
        if event.get("advice") and event["advice"] not in advice_shown:  # the same cue on both legs: once
            advice_shown.add(event["advice"])
            grid.add_row(Text("→", style="yellow"), Text(event["advice"], style="yellow"))
    if len(active) > MAX_WARNINGS_SHOWN:
        grid.add_row("", Text(f"… and {len(active) - MAX_WARNINGS_SHOWN} more", style="dim"))
    return [grid]


def _append_figure(line: Text, before: str, figure: EndToEndFigure, after: str = "") -> None:
    if figure.value is None:
        line.append(f"{before.replace('≤ ', '')}–{after}", style="dim")  # no bound on nothing
        return
    unit = f" {figure.unit}" if figure.unit else ""
    line.append(f"{before}{_number(figure.value)}{unit}{after}", style=LEVEL_STYLE[figure.level.value])


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}".removesuffix(".0")


def _cut(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[:chars - 1] + "…"


def _level(value: Any) -> str:
    return value if value in LEVEL_STYLE else "unknown"


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
