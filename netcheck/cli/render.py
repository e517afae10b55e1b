"""Rich output for people. It renders the same dicts `--json` prints; it decides nothing."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from netcheck.quality.metrics import CUE_WORDS
from netcheck.session.report import SessionReport

T = TypeVar("T")

LEVEL_STYLE = {"good": "green", "fair": "yellow", "poor": "bold red", "unknown": "dim"}
RECOMMENDATION_STYLE = {"video": "bold green", "audio_only": "bold yellow", "phone": "bold red", "unknown": "bold"}
CUE_TITLES = {cue.value: words.title for cue, words in CUE_WORDS.items()}
DIRECTION_WORDS = {"upstream": "you → clinic", "downstream": "clinic → you"}
RECOMMENDATION_WORDS = {"video": "video", "audio_only": "audio only", "phone": "phone", "unknown": "unknown"}
WIDE = 120
"""From this console width on, tables show the long forms (whole dates, whole server URLs)."""
UNITS = ("ms", "s", "min", "%", "fps", "Mbps", "kbit/s", "px", "packets", "pkts", "B", "MB")
_KEPT_SPACES = re.compile(r"(?<=\d) (?=(?:" + "|".join(re.escape(unit) for unit in UNITS) + r")(?![\w/]))"
                          r"|(?<=[≥≤<>=≈]) (?=[-+−]?\d)")
"""Spaces a line must not break at: between a number and its unit, and between '≥' and its number."""


class Prose:
    """Free text that wraps between words but never between a figure and its unit.

    Rich wraps at every space (a no-break space included), so "29.7 fps" could end one line at
    "29.7"; this renderable chooses its own break points and hands Rich lines that already fit.
    """

    def __init__(self, text: str | Text, style: str = "", break_after: str = "") -> None:
        self.text = Text.from_markup(text, style=style) if isinstance(text, str) else text
        self.break_after = break_after
        """Characters after which a line may also break, kept on the line: "." for a host name."""

    def _words(self, text: Text) -> list[tuple[int, int]]:
        """(start, end) of each unbreakable run of a paragraph's plain text."""
        plain = text.plain
        if self.break_after:
            return [match.span() for match in re.finditer(f"[^{re.escape(self.break_after)}]*.?", plain)
                    if match.end() > match.start()]
        breaks = [match.start() for match in re.finditer(" ", plain)
                  if not _KEPT_SPACES.match(plain, match.start())]
        words, start = [], 0
        for position in [*breaks, len(plain)]:
            if position > start:
                words.append((start, position))
            start = position + 1
        return words

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        paragraphs = self.text.split("\n")
        longest = max((cell_len(text.plain[start:end]) for text in paragraphs for start, end in self._words(text)),
                      default=0)
        widest = max((cell_len(text.plain) for text in paragraphs), default=0)
        return Measurement(min(longest, options.max_width), min(widest, options.max_width))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.lines(options.max_width)

    def lines(self, width: int) -> Iterator[Text]:
        for text in self.text.split("\n", allow_blank=True):
            line_start = line_end = None
            for start, end in self._words(text):
                if line_start is None:
                    line_start, line_end = start, end
                elif cell_len(text.plain[line_start:end]) <= width:
                    line_end = end
                else:
                    yield self._left(text[line_start:line_end])
                    line_start, line_end = start, end
            yield self._left(text[line_start:line_end] if line_start is not None else Text())

    @staticmethod
    def _left(line: Text) -> Text:
        line.justify = "left"  # prose reads from the left, also in a right-justified column
        return line


async def with_progress(job: Awaitable[T], expected_s: float, label: str, console: Console) -> T:
    """Await `job` while a progress bar advances with the time the job is expected to take."""
    if not console.is_terminal:
        return await job
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    task_future = asyncio.ensure_future(job)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(label, total=expected_s)
        start_s = time.perf_counter()
        while not task_future.done():
            progress.update(task, completed=min(expected_s, time.perf_counter() - start_s))
            await asyncio.wait({task_future}, timeout=0.1)
    return task_future.result()


def render_check(report: Mapping[str, Any], console: Console) -> None:
    """The verdict in one sentence, a per-cue table with the deciding figure, every delay figure by
    name (the one timing was judged on marked), then the advice.

    The quality model says where the deciding RTT came from (its `source`); the words for it are
    chosen here: in a check the UDP probe runs during the A/V call when that call worked.
    """
    style = RECOMMENDATION_STYLE.get(report["recommendation"], "bold")
    console.print(Prose(report["summary"], style))
    measurements = report["measurements"]
    table = _table("cue", "level", "value", "good", "fair", "decided by")
    for column in table.columns[1:5]:
        column.no_wrap = True
    deciding_delay = None
    for cue, verdict in report["cues"].items():
        level = verdict["level"]
        name = verdict["deciding_metric"] or ""
        deciding = verdict["metrics"].get(name)
        if deciding:
            value, good, fair = _with_unit(deciding["value"], deciding["unit"]), deciding["good"], deciding["fair"]
            what = deciding["label"]
            if name == "rtt_p95_ms":
                deciding_delay = _delay_kind(deciding["source"], measurements)
                what = DELAY_NAMES[deciding_delay]
            if deciding.get("direction") in DIRECTION_WORDS:
                what += f", {DIRECTION_WORDS[deciding['direction']]}"
        else:
            value, good, fair, what = "–", "", "", verdict["note"]
        table.add_row(CUE_TITLES.get(cue, cue), f"[{LEVEL_STYLE[level]}]{level}[/]", value, good, fair, Prose(what))
    console.print(table)
    _render_delays(report, deciding_delay, console)
    udp = measurements.get("udp", {})
    if udp.get("status") == "ok":
        console.print(Prose(f"[dim]UDP, {udp['packets_sent']} packets: jitter {_with_unit(udp['jitter_ms'], 'ms')} · "
                            f"loss {_with_unit(udp['loss_pct'], '%')} (up {_with_unit(udp['loss_up_pct'], '%')}, "
                            f"down {_with_unit(udp['loss_down_pct'], '%')})[/]"))
    throughput = measurements.get("throughput", {})
    if throughput.get("status") == "ok":
        console.print(Prose(f"[dim]Speed: {_with_unit(throughput['download_mbps'], 'Mbps')} down, "
                            f"{_with_unit(throughput['upload_mbps'], 'Mbps')} up[/]"))
    if report.get("video_setting"):
        console.print(Prose(f"Video setting this connection carries: [bold]{report['video_setting']}[/]"))
    if report["advice"]:
        console.print("[bold]What to do[/]")
        advice = Table.grid(padding=(0, 1))
        advice.add_column(no_wrap=True)
        advice.add_column()
        for line in report["advice"]:
            advice.add_row(" •", Prose(line))
        console.print(advice)


DELAY_NAMES = {
    "before_load": "idle RTT before the speed test",
    "idle": "idle RTT p95",
    "during_call": "RTT p95 during the call",
    "loaded_down": "RTT p95 under download load",
    "loaded_up": "RTT p95 under upload load",
    "rtcp": "RTT during the call (RTCP, UDP blocked)",
    "other": "delay (RTT)",
}
"""What each round-trip delay of a check is, as the check names it (the cue table and the delay lines)."""


def _delay_kind(source: str, measurements: Mapping[str, Any]) -> str:
    """Which delay a metric's `source` is: the UDP probe's RTT is idle unless the A/V call ran beside it."""
    if source.startswith("throughput.loaded_rtt_down"):
        return "loaded_down"
    if source.startswith("throughput.loaded_rtt_up"):
        return "loaded_up"
    if source.startswith("udp.rtt"):
        return "during_call" if measurements.get("av", {}).get("status") == "ok" else "idle"
    if source.startswith("av"):
        return "rtcp"
    return "other"


def _render_delays(report: Mapping[str, Any], deciding: str | None, console: Console) -> None:
    """Every round-trip delay the check measured, one line each, the one timing was judged on marked."""
    measurements = report["measurements"]
    udp, throughput = measurements.get("udp", {}), measurements.get("throughput", {})
    rows: list[tuple[str, str, Any]] = []
    if throughput.get("status") == "ok" and throughput.get("idle_rtt_ms") is not None:
        rows.append(("before_load", DELAY_NAMES["before_load"], throughput["idle_rtt_ms"]))
    if udp.get("status") == "ok":
        kind = _delay_kind("udp.rtt_p95_ms", measurements)
        rows.append((kind, DELAY_NAMES[kind], udp.get("rtt_p95_ms")))
    if throughput.get("status") == "ok":
        rows.append(("loaded_down", DELAY_NAMES["loaded_down"], throughput.get("loaded_rtt_down_ms")))
        rows.append(("loaded_up", DELAY_NAMES["loaded_up"], throughput.get("loaded_rtt_up_ms")))
    if deciding in ("rtcp", "other"):
        timing = report["cues"].get("conversational_timing", {}).get("metrics", {}).get("rtt_p95_ms", {})
        rows.append((deciding, DELAY_NAMES[deciding], timing.get("value")))
    rows = [row for row in rows if row[2] is not None]
    if not rows:
        return
    console.print()
    table = _table("round-trip delay", "", "")
    table.columns[1].no_wrap = True
    table.columns[1].justify = "right"
    table.columns[2].no_wrap = True
    for kind, name, value in rows:
        table.add_row(Prose(name), _with_unit(value, "ms"), "← timing judged on this" if kind == deciding else "")
    console.print(table)


def render_fields(title: str, fields: Mapping[str, Any], console: Console) -> None:
    """A probe's flat fields as a two-column table; a text value (an error) wraps, a number never."""
    console.print(Prose(title, "italic"))  # above, not as the table's title: that would wrap at the table's width
    table = Table(show_header=False, box=None, padding=(0, 1), pad_edge=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", justify="right")
    for name, value in fields.items():
        table.add_row(name, Prose(value) if isinstance(value, str) and " " in value else _number(value))
    console.print(table)


def render_history(reports: list[Mapping[str, Any]], console: Console) -> None:
    """Past checks, newest first: when, the recommendation, the level and where whole; the summary wraps.
    Under WIDE columns the date loses its year and seconds and the server its scheme."""
    if not reports:
        console.print("No checks stored yet. Run `netcheck check`.")
        return
    wide = console.width >= WIDE
    table = _table("started (UTC)", "verdict", "level", "server", "summary")
    for column in table.columns[:3]:
        column.no_wrap = True
    servers = [(report.get("server") or "") for report in reports]
    servers = servers if wide else [urlsplit(server).netloc or server for server in servers]
    if wide:
        table.columns[3].no_wrap = True  # the whole URL on one line; the summary yields
    else:  # a long host name breaks after its dots, so that the summary keeps room to be read
        table.columns[3].max_width = 20
    for report, server in zip(reports, servers):
        style = RECOMMENDATION_STYLE.get(report["recommendation"], "")
        started = report["started_at"][:19].replace("T", " ")
        table.add_row(started if wide else started[5:16],
                      f"[{style}]{RECOMMENDATION_WORDS.get(report['recommendation'], report['recommendation'])}[/]",
                      f"[{LEVEL_STYLE.get(report['level'], '')}]{report['level']}[/]",
                      Prose(server, break_after="."), Prose(report["summary"]))
    console.print(table)


def _table(*headers: str) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 1), pad_edge=False)
    for header in headers:
        table.add_column(header)
    return table


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return "–" if value is None else str(value)


def _with_unit(value: Any, unit: str) -> str:
    return f"{_number(value)} {unit}".rstrip() if value is not None else "–"


def render_av(fields: Mapping[str, Any], console: Console) -> None:
    """The A/V probe: headline figures, then upstream and downstream side by side."""
    console.print(Prose(f"status {fields['status']} · path {fields.get('ice_path') or '–'} · first frame after "
                        f"{_with_unit(fields['time_to_first_frame_ms'], 'ms')} · "
                        f"A/V skew {_with_unit(fields['av_skew_ms'], 'ms')}"))
    if not fields.get("upstream") or not fields.get("downstream"):
        return
    table = _table("field", "upstream (you → server)", "downstream (server → you)")
    table.columns[0].no_wrap = True
    for column in table.columns[1:]:
        column.justify = "right"
    for name in fields["upstream"]:
        table.add_row(name, _number(fields["upstream"][name]), _number(fields["downstream"][name]))
    console.print(table)


def render_session_report(report: SessionReport, console: Console) -> None:
    """`netcheck session report`: the checks before it, the warnings timeline, then minutes per cue level for each leg."""
    console.print(Prose(f"[bold]Session {report.session_id}[/]  {_clock(report.first_at)} – {_clock(report.last_at)} UTC"
                        "  · windows: " + ", ".join(f"{leg} {count}" for leg, count in sorted(report.windows.items()))))
    if report.checks:
        console.print("\n[bold]Checks before the session[/]")
        checks = _when_what_grid()
        for check in report.checks:
            what = Text.from_markup(f"[bold]{check.recommendation.replace('_', ' ')}[/] ({check.client}"
                                    f"{', code ' + check.code if check.code else ''}): ")
            what.append(check.summary)
            if check.device_findings:
                what.append("\ndevices: " + ", ".join(check.device_findings), style="dim")
            checks.add_row(f"  {check.started_at[:10]} {_clock(check.started_at)}", Prose(what))
        console.print(checks)
    if report.warnings:
        console.print("\n[bold]Warnings[/]")
        timeline = _when_what_grid()
        for span in report.warnings:
            until = (f"– {_clock(span.cleared_at)} ({span.duration_s / 60:.1f} min)" if span.cleared_at
                     else "– end (still active)")
            what = Text.from_markup(f"[bold]{span.leg}[/] {span.cue.replace('_', ' ')}: ")
            what.append(span.message)
            if span.advice:
                what.append("\n" + span.advice, style="dim")
            timeline.add_row(f"  {_clock(span.raised_at)} {until}", Prose(what))
        console.print(timeline)
    elif report.windows:
        console.print(Prose("\nNo warnings: the connection carried every measured cue throughout."))
    else:
        console.print(Prose("\nNo measurements during the session are stored here (the agent and `netcheck watch` "
                            "store them on their own machines)."))
    if report.skipped_rows:
        console.print(Prose(f"\n{report.skipped_rows} stored row(s) could not be read (no date, a wrong type, "
                            "or not JSON) and are left out."))
    tables = [(f"{leg}: minutes per level", cues) for leg, cues in sorted(report.minutes_by_level.items())]
    tables += [(f"{leg}, measured on the call ({report.minutes_on_call.get(leg, 0.0):.1f} min): minutes per level", cues)
               for leg, cues in sorted(report.minutes_by_level_on_call.items())]
    for title, cues in tables:
        table = _table("cue", "good", "fair", "poor", "unknown")
        table.title, table.title_justify = title, "left"
        for column in table.columns[1:]:
            column.justify = "right"
        for cue, minutes in cues.items():
            table.add_row(cue.replace("_", " "), *(f"{minutes[level]:.1f}" for level in ("good", "fair", "poor", "unknown")))
        console.print()
        console.print(table)


def _when_what_grid() -> Table:
    """Two columns: a time that never wraps, and what happened then."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    return grid


def _clock(iso: str | None) -> str:
    return iso[11:19] if iso else "–"
