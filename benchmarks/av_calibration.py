"""Measure the A/V probe's own pipeline offset (d_video − d_audio on a perfect path).

Runs the probe against an in-process server on loopback with no audio offset, several times and
for several video formats, and prints the raw skew (before `pipeline_offset_ms()` in
netcheck/av/figures.py is subtracted) per direction, and the model's value beside it.

    python benchmarks/av_calibration.py [--runs 5] [--formats 640x360@30,1280x720@30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netcheck.av import figures  # noqa: E402
from netcheck.av.peer import restrict_host_candidates  # noqa: E402
from netcheck.av.session import parse_video_format  # noqa: E402
from netcheck.probes.av import AvProbe, AvProbeSettings  # noqa: E402
from netcheck.server.app import start_server  # noqa: E402


async def raw_skews(video_text: str, runs: int, duration_s: float) -> tuple[list[float], list[float]]:
    upstream, downstream = [], []
    server = await start_server("127.0.0.1", 0, 0)
    try:
        for _ in range(runs):
            settings = AvProbeSettings(duration_s=duration_s, video=parse_video_format(video_text))
            result = await AvProbe(server.url, settings).run()
            if result.upstream is None or result.downstream is None:
                raise SystemExit(f"probe failed: {result.error}")
            for skews, direction in ((upstream, result.upstream), (downstream, result.downstream)):
                if direction.av_skew_ms is not None:
                    skews.append(direction.av_skew_ms + figures.pipeline_offset_ms(settings.video))
    finally:
        await server.close()
    return upstream, downstream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--formats", default="640x360@30,1280x720@30,320x180@15")
    args = parser.parse_args()
    restrict_host_candidates(["127.0.0.1"])
    print(f"Raw A/V skew on loopback, ms (d_video − d_audio; {args.runs} runs × {args.duration:g} s):\n")
    print("| video | direction | median | min | max | model |\n|---|---|---:|---:|---:|---:|")
    for video_text in args.formats.split(","):
        upstream, downstream = asyncio.run(raw_skews(video_text, args.runs, args.duration))
        for name, skews in (("upstream", upstream), ("downstream", downstream)):
            model = figures.pipeline_offset_ms(parse_video_format(video_text))
            print(f"| {video_text} | {name} | {statistics.median(skews):.1f} | {min(skews):.1f} | {max(skews):.1f} "
                  f"| {model:.1f} |")


if __name__ == "__main__":
    main()
