"""The A/V probe in a short-lived child process (`python -m netcheck probe av --json`).

The agent runs its A/V probe this way so that aiortc (≈ 170 ms to import, ≈ 100 MB while a call
runs) never lives in the long-running agent: its memory leaves with the child.
"""

from __future__ import annotations

import asyncio
import json
import sys

from netcheck.model import Status
from netcheck.probes.av import AvResult, result_from_fields
from netcheck.probes.av import failed_result as av_failed

AV_TIMEOUT_MARGIN_S = 20.0
"""Start-up, ICE and the server's report on top of the A/V probe's own duration."""
MAX_AV_OUTPUT_BYTES = 256 * 1024


async def run_av_subprocess(server_url: str, duration_s: float, video: str, audio_offset_ms: float = 0.0) -> AvResult:
    """`python -m netcheck probe av --json` in a child process: aiortc's memory leaves with it."""
    command = [sys.executable, "-m", "netcheck", "probe", "av", "--server", server_url,
               "--duration", f"{duration_s:g}s", "--video", video, "--json"]
    if audio_offset_ms:
        command += ["--audio-offset-ms", f"{audio_offset_ms:g}"]
    try:
        process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.DEVNULL,
                                                       stdin=asyncio.subprocess.DEVNULL)
    except OSError as error:
        return av_failed(Status.ERROR, f"cannot start the A/V probe: {error.strerror or error}")
    try:
        assert process.stdout is not None
        output = await asyncio.wait_for(_read_to_end(process.stdout, MAX_AV_OUTPUT_BYTES),
                                        duration_s + AV_TIMEOUT_MARGIN_S)
        await asyncio.wait_for(process.wait(), 5.0)
    except asyncio.TimeoutError:
        return av_failed(Status.TIMEOUT, "A/V probe did not finish in time")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    try:
        return result_from_fields(json.loads(output))
    except (ValueError, KeyError, TypeError):
        return av_failed(Status.ERROR, f"A/V probe subprocess failed (exit {process.returncode})")


async def _read_to_end(stream: asyncio.StreamReader, limit_bytes: int) -> bytes:
    """Everything up to EOF, but never more than `limit_bytes` (a broken child cannot fill memory)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit_bytes:
        chunk = await stream.read(limit_bytes - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
