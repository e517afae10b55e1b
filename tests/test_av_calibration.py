"""The A/V probe's pipeline-offset calibration: one source for its constants, and a check where it
was not fitted (a video format and an audio offset that `benchmarks/av_calibration.py` holds out)."""

from __future__ import annotations

import asyncio
import re

import pytest

from netcheck.av import figures
from netcheck.av.markers import VideoFormat
from netcheck.av.peer import restrict_host_candidates
from netcheck.model import Status
from netcheck.probes.av import AvProbe, AvProbeSettings
from netcheck.server.app import start_server
from tests.harness.servers import REPO

HELD_OUT = VideoFormat(960, 540, 24)
"""Fitted on 640x360@30, 1280x720@30 and 320x180@15 at offset 0; never on this format."""
HELD_OUT_OFFSET_MS = 80.0
HELD_OUT_BOUND_MS = 8.0
"""A floor, not 3× the median held-out error (0.0–0.7 ms in `python benchmarks/av_calibration.py
--runs 5`): the video term moves with the CPU's load (5.2…12.2 ms/Mpx between runs and days, 3.6 ms
at 0.52 Mpx) and one run's median skew by up to 3.2 ms; BENCHMARKS.md has the spreads."""


def test_the_docs_quote_the_calibration_constants_from_the_code() -> None:
    text = (REPO / "docs" / "av-probe.md").read_text()
    for name in ("AUDIO_PIPELINE_MS", "VIDEO_MS_PER_MEGAPIXEL"):
        quoted = re.findall(rf"`{name} = ([0-9.]+)`", text)
        assert quoted == [f"{getattr(figures, name):g}"], (name, quoted)


@pytest.mark.slow
def test_calibration_holds_on_a_held_out_format_and_offset() -> None:
    async def probe():  # type: ignore[no-untyped-def]
        server = await start_server("127.0.0.1", 0, 0)
        try:
            return await AvProbe(server.url, AvProbeSettings(duration_s=3.0, video=HELD_OUT,
                                                             audio_offset_ms=HELD_OUT_OFFSET_MS)).run()
        finally:
            await server.close()

    restrict_host_candidates(["127.0.0.1"])
    result = asyncio.run(probe())
    assert result.status == Status.OK, result.error
    for direction in (result.upstream, result.downstream):
        assert direction is not None and direction.av_skew_ms is not None
        assert abs(direction.av_skew_ms - HELD_OUT_OFFSET_MS) <= HELD_OUT_BOUND_MS, direction
