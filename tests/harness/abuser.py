"""An abusive client for the fairness tests and benchmark (issue 15): it holds as many throughput
streams as it can, reading them just fast enough not to be cut, and keeps asking for A/V sessions
it never ends. Loopback or test namespaces only; it stops by itself.

    python -m tests.harness.abuser http://HOST:PORT SECONDS [STREAMS]

Prints one JSON line: the HTTP statuses it got, by endpoint. SIGTERM ends the abuse early (within
HOLD_READ_EVERY_S) and still prints them: a test stops it when what it measured beside it is done.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import Counter

HOLD_READ_BYTES = 64 * 1024
HOLD_READ_EVERY_S = 0.5
"""Slow enough to cost the server little, fast enough never to hit its idle cut."""
OFFER_EVERY_S = 0.5


class Until:
    """The abuse's end: SECONDS after the start, or sooner when told to stop (SIGTERM)."""

    def __init__(self, seconds: float) -> None:
        self.end_s = time.monotonic() + seconds

    def stop(self) -> None:
        self.end_s = min(self.end_s, time.monotonic())

    def running(self) -> bool:
        return time.monotonic() < self.end_s


async def hold_stream(http, url: str, until: Until, statuses: Counter) -> None:
    import aiohttp

    try:
        async with http.get(f"{url}/v1/throughput/download?bytes={1 << 30}") as response:
            statuses[f"download {response.status}"] += 1
            if response.status != 200:
                return
            while until.running():
                await response.content.read(HOLD_READ_BYTES)
                await asyncio.sleep(HOLD_READ_EVERY_S)
    except (aiohttp.ClientError, asyncio.TimeoutError) as error:
        statuses[f"download {type(error).__name__}"] += 1


async def ask_for_calls(http, url: str, until: Until, statuses: Counter) -> None:
    """A real offer (so the server would accept it), posted again and again; no session is ever ended."""
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.addTransceiver("video")
    pc.addTransceiver("audio")
    await pc.setLocalDescription(await pc.createOffer())
    offer = {"type": "offer", "sdp": pc.localDescription.sdp}
    try:
        while until.running():
            async with http.post(f"{url}/v1/av/offer", json=offer) as response:
                await response.read()
                statuses[f"av {response.status}"] += 1
            await asyncio.sleep(OFFER_EVERY_S)
    finally:
        await pc.close()


async def abuse(url: str, seconds: float, streams: int) -> Counter:
    import aiohttp

    statuses: Counter = Counter()
    until = Until(seconds)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, until.stop)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=seconds + 30)) as http:
        await asyncio.gather(*(hold_stream(http, url, until, statuses) for _ in range(streams)),
                             ask_for_calls(http, url, until, statuses))
    return statuses


def main() -> None:
    url, seconds = sys.argv[1], float(sys.argv[2])
    streams = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    print(json.dumps(dict(asyncio.run(abuse(url, min(seconds, 300.0), min(streams, 200))))), flush=True)


if __name__ == "__main__":
    main()
