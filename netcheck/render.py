"""Rich output for people. It renders the same dicts `--json` prints; it decides nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from netcheck.quality.metrics import CUE_WORDS

T = TypeVar("T")

LEVEL_STYLE = {"good": "green", "fair": "yellow", "poor": "bold red", "unknown": "dim"}
RECOMMENDATION_STYLE = {"video": "bold green", "audio_only": "bold yellow", "phone": "bold red", "unknown": "bold"}
CUE_TITLES = {cue.value: words.title for cue, words in CUE_WORDS.items()}
DIRECTION_WORDS = {"upstream": "you → clinic", "downstream": "clinic → you"}


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
    """The verdict in one sentence, a per-cue table with the deciding figure, then the advice."""
    style = RECOMMENDATION_STYLE.get(report["recommendation"], "bold")
    console.print(f"[{style}]{report['summary']}[/]")
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    for column in ("cue", "level", "deciding figure", "good", "fair"):
        table.add_column(column)
    for cue, verdict in report["cues"].items():
        level = verdict["level"]
        deciding = verdict["metrics"].get(verdict["deciding_metric"] or "")
        if deciding:
            figure = f"{deciding['label']} {_number(deciding['value'])} {deciding['unit']}".rstrip()
            if deciding.get("direction") in DIRECTION_WORDS:
                figure += f", {DIRECTION_WORDS[deciding['direction']]}"
            good, fair = deciding["good"], deciding["fair"]
        else:
            figure, good, fair = verdict["note"], "", ""
        table.add_row(CUE_TITLES.get(cue, cue), f"[{LEVEL_STYLE[level]}]{level}[/]", figure, good, fair)
    console.print(table)
    udp = report["measurements"].get("udp", {})
    if udp.get("status") == "ok":
        console.print(f"[dim]Measured over {udp['packets_sent']} packets: delay p95 {_number(udp['rtt_p95_ms'])} ms · "
                      f"jitter {_number(udp['jitter_ms'])} ms · loss {_number(udp['loss_pct'])} % "
                      f"(up {_number(udp['loss_up_pct'])} %, down {_number(udp['loss_down_pct'])} %)[/]")
    throughput = report["measurements"].get("throughput", {})
    if throughput.get("status") == "ok":
        console.print(f"[dim]Speed: {_number(throughput['download_mbps'])} Mbps down, "
                      f"{_number(throughput['upload_mbps'])} Mbps up · delay under load "
                      f"+{_number(throughput['bufferbloat_ms'])} ms[/]")
    if report.get("video_setting"):
        console.print(f"Video setting this connection carries: [bold]{report['video_setting']}[/]")
    if report["advice"]:
        console.print("[bold]What to do[/]")
        for line in report["advice"]:
            console.print(f"  • {line}")


def render_fields(title: str, fields: Mapping[str, Any], console: Console) -> None:
    """A probe's flat fields as a two-column table."""
    table = Table(title=title, show_header=False, box=None, padding=(0, 2))
    table.add_column("field", style="bold")
    table.add_column("value", justify="right")
    for name, value in fields.items():
        table.add_row(name, _number(value))
    console.print(table)


def render_history(reports: list[Mapping[str, Any]], console: Console) -> None:
    if not reports:
        console.print("No checks stored yet. Run `netcheck check`.")
        return
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    for column in ("started (UTC)", "recommendation", "level", "server"):
        table.add_column(column, no_wrap=True)
    table.add_column("summary", no_wrap=True, overflow="ellipsis")
    for report in reports:
        style = RECOMMENDATION_STYLE.get(report["recommendation"], "")
        table.add_row(report["started_at"][:19].replace("T", " "), f"[{style}]{report['recommendation']}[/]",
                      report["level"], report.get("server") or "", report["summary"])
    console.print(table)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return "–" if value is None else str(value)


def render_av(fields: Mapping[str, Any], console: Console) -> None:
    """The A/V probe: headline figures, then upstream and downstream side by side."""
    console.print(f"status {fields['status']} · path {fields.get('ice_path') or '–'} · first frame after "
                  f"{_number(fields['time_to_first_frame_ms'])} ms · A/V skew {_number(fields['av_skew_ms'])} ms")
    if not fields.get("upstream") or not fields.get("downstream"):
        return
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    table.add_column("field")
    table.add_column("upstream (you → server)", justify="right")
    table.add_column("downstream (server → you)", justify="right")
    for name in fields["upstream"]:
        table.add_row(name, _number(fields["upstream"][name]), _number(fields["downstream"][name]))
    console.print(table)


def render_session_report(report: Any, console: Console) -> None:
    """`netcheck session report`: the warnings timeline, then minutes per cue level for each leg."""
    console.print(f"[bold]Session {report.session_id}[/]  {_clock(report.first_at)} – {_clock(report.last_at)} UTC"
                  f"  · windows: " + ", ".join(f"{leg} {count}" for leg, count in sorted(report.windows.items())))
    if report.warnings:
        console.print("\n[bold]Warnings[/]")
        for span in report.warnings:
            until = f"– {_clock(span.cleared_at)} ({span.duration_s / 60:.1f} min)" if span.cleared_at else "– end (still active)"
            console.print(f"  {_clock(span.raised_at)} {until}  [bold]{span.leg}[/] {span.cue.replace('_', ' ')}: "
                          f"{span.message}")
            if span.advice:
                console.print(f"      {span.advice}", style="dim")
    else:
        console.print("\nNo warnings: the connection carried every measured cue throughout.")
    for leg, cues in sorted(report.minutes_by_level.items()):
        table = Table(title=f"{leg}: minutes per level", title_justify="left", show_header=True,
                      header_style="bold", box=None, padding=(0, 2))
        table.add_column("cue")
        for level in ("good", "fair", "poor", "unknown"):
            table.add_column(level, justify="right")
        for cue, minutes in cues.items():
            table.add_row(cue.replace("_", " "), *(f"{minutes[level]:.1f}" for level in ("good", "fair", "poor", "unknown")))
        console.print()
        console.print(table)


def _clock(iso: str | None) -> str:
    return iso[11:19] if iso else "–"
