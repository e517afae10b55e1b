"""Calibrate the A/V probe's own pipeline offset (d_video − d_audio on a perfect path) and check
the calibration where it was not fitted.

    python benchmarks/av_calibration.py --runs 5 [--duration 4] [--fit 640x360@30,1280x720@30,320x180@15]
                                        [--held-out 960x540@24] [--offsets=-120,0,80]

Each run probes an in-process server on loopback:
- fit: every --fit format with no audio offset; the raw skew (before `pipeline_offset_ms()` is
  subtracted) per direction. The model `1000/fps + b·Mpx − a` is fitted by least squares to these
  raw skews (a = the audio path, b = video ms per megapixel), per run and over all runs;
- held out: the --held-out format, never fitted on, with each --offsets audio offset (the sender
  leads its audio by N ms, so a perfect path should report N); the error is the probe's reported
  skew (with the code's constants) minus N, per direction.

Printed: the raw skews with the code's model beside them; the fitted a and b with their spread
between runs (the fit of each run alone); the held-out errors, median (min–max) over the runs.
The code's constants are AUDIO_PIPELINE_MS and VIDEO_MS_PER_MEGAPIXEL in netcheck/av/figures.py.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netcheck.av import figures  # noqa: E402
from netcheck.av.markers import VideoFormat  # noqa: E402
from netcheck.av.peer import restrict_host_candidates  # noqa: E402
from netcheck.av.session import parse_video_format  # noqa: E402
from netcheck.probes.av import AvProbe, AvProbeSettings  # noqa: E402
from netcheck.server.app import start_server  # noqa: E402

DIRECTIONS = ("upstream", "downstream")


async def reported_skews(server_url: str, video: VideoFormat, offset_ms: float, duration_s: float) -> dict[str, float]:
    """One probe run: each direction's reported av_skew_ms (the code's pipeline offset removed)."""
    result = await AvProbe(server_url, AvProbeSettings(duration_s=duration_s, video=video,
                                                       audio_offset_ms=offset_ms)).run()
    if result.upstream is None or result.downstream is None:
        raise SystemExit(f"probe failed ({video}, offset {offset_ms:g} ms): {result.error}")
    return {name: getattr(result, name).av_skew_ms for name in DIRECTIONS
            if getattr(result, name).av_skew_ms is not None}


def fit(points: list[tuple[VideoFormat, float]]) -> tuple[float, float]:
    """Least squares of raw − 1000/fps = b·Mpx − a over (format, raw skew) points: (a, b)."""
    xs = [video.width * video.height / 1e6 for video, _ in points]
    ys = [raw - 1000.0 / video.fps for video, raw in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    b = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
    return b * mean_x - mean_y, b


def spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}…{max(values):.{digits}f})"


async def measure(args: argparse.Namespace) -> tuple[dict, dict]:
    fit_formats = [parse_video_format(text) for text in args.fit.split(",")]
    held_out = parse_video_format(args.held_out)
    offsets = [float(text) for text in args.offsets.split(",")]
    raw: dict[tuple[str, str], list[float]] = {}  # (format, direction) → raw skew per run
    held: dict[tuple[float, str], list[float]] = {}  # (offset, direction) → reported − offset per run
    per_run_points: list[list[tuple[VideoFormat, float]]] = []
    server = await start_server("127.0.0.1", 0, 0)
    try:
        for k in range(args.runs):
            points = []
            for video in fit_formats:
                for direction, skew in (await reported_skews(server.url, video, 0.0, args.duration)).items():
                    raw_skew = skew + figures.pipeline_offset_ms(video)
                    raw.setdefault((_text(video), direction), []).append(raw_skew)
                    points.append((video, raw_skew))
            per_run_points.append(points)
            for offset in offsets:
                for direction, skew in (await reported_skews(server.url, held_out, offset, args.duration)).items():
                    held.setdefault((offset, direction), []).append(skew - offset)
            print(f"run {k + 1}/{args.runs} done", file=sys.stderr, flush=True)
    finally:
        await server.close()
    return {"raw": raw, "per_run_points": per_run_points, "fit_formats": fit_formats}, held


def _text(video: VideoFormat) -> str:
    return f"{video.width}x{video.height}@{video.fps}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of media per probe run")
    parser.add_argument("--fit", default="640x360@30,1280x720@30,320x180@15", help="formats the model is fitted on")
    parser.add_argument("--held-out", default="960x540@24", help="a format the model is not fitted on")
    parser.add_argument("--offsets", default="-120,0,80", help="audio offsets (ms) tried on the held-out format")
    args = parser.parse_args()
    restrict_host_candidates(["127.0.0.1"])
    fitted, held = asyncio.run(measure(args))

    print(f"{args.runs} runs × {args.duration:g} s per probe, loopback, in-process server. Code's constants: "
          f"AUDIO_PIPELINE_MS = {figures.AUDIO_PIPELINE_MS}, VIDEO_MS_PER_MEGAPIXEL = {figures.VIDEO_MS_PER_MEGAPIXEL}.\n")
    print("Raw skew at audio offset 0 (fitting formats), ms:\n")
    print("| video | direction | median (min…max) | code's model |\n|---|---|---:|---:|")
    for (video_text, direction), values in fitted["raw"].items():
        model = figures.pipeline_offset_ms(parse_video_format(video_text))
        print(f"| {video_text} | {direction} | {spread(values)} | {model:.1f} |")

    all_points = [point for points in fitted["per_run_points"] for point in points]
    a_all, b_all = fit(all_points)
    per_run = [fit(points) for points in fitted["per_run_points"]]
    print("\nFit of `1000/fps + b·Mpx − a` (least squares over both directions):\n")
    print("| fitted on | a = audio path ms | b = video ms per Mpx |\n|---|---:|---:|")
    print(f"| all {args.runs} runs | {a_all:.1f} | {b_all:.1f} |")
    print(f"| each run alone, median (min…max) | {spread([a for a, _ in per_run])} | {spread([b for _, b in per_run])} |")
    print("\nHow far the model's offset moves between runs (each run's own fit), ms:\n")
    print("| video | median (min…max) | code's model |\n|---|---:|---:|")
    for video in [*fitted["fit_formats"], parse_video_format(args.held_out)]:
        mpx = video.width * video.height / 1e6
        offsets = [1000.0 / video.fps + b * mpx - a for a, b in per_run]
        print(f"| {_text(video)} | {spread(offsets)} | {figures.pipeline_offset_ms(video):.1f} |")

    print(f"\nHeld out: {args.held_out} (never fitted on) with audio offsets; error = reported skew − offset, ms:\n")
    print("| audio offset ms | direction | error median (min…max) |\n|---:|---|---:|")
    for (offset, direction), errors in held.items():
        print(f"| {offset:+g} | {direction} | {spread(errors)} |")
    worst = max(abs(error) for errors in held.values() for error in errors)
    print(f"\nWorst held-out error over all runs: {worst:.1f} ms.")


if __name__ == "__main__":
    main()
