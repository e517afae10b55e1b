"""Record tests/rtcstats/chromium_call.jsonl: every message the real @jitsi/rtcstats client sent from two
headless Chromiums in a real call (tests/harness/call_pair.py, door "rtcstats"), with when it was sent.

    python -m tests.harness.rtcstats_client install      # the npm client, into the ignored .npm/
    python tests/rtcstats/record_chromium.py --seconds 60

Root (the client's Chromium runs in a network namespace) and Debian's chromium. A line per message:
{"role", "at_ms" (since the page's rtcstats socket opened), "sent" (the message as sent)}. What replays
it: benchmarks/rtcstats_cost.py (the node's cost per participant it follows). The client obfuscates the
ICE candidates' addresses itself (trace-ws.js `obfuscate`); the addresses left (the node's and the page's,
in the identity's config) are the test's own loopback and network namespace.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `tests.*` from a checkout

HERE = Path(__file__).parent
RECORDER = """(() => {
  // Keeps what is sent on the rtcstats socket (the page's other socket is the clinic's signalling).
  const Native = window.WebSocket;
  window.__rtcstatsSent = [];
  window.WebSocket = function (url, protocols) {
    const socket = new Native(url, protocols);
    if (String(url).includes("/v1/rtcstats/")) {
      const opened = performance.now();
      const send = socket.send.bind(socket);
      socket.send = (data) => { window.__rtcstatsSent.push([performance.now() - opened, String(data)]); send(data); };
    }
    return socket;
  };
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
})();"""


def record(seconds: float) -> list[dict[str, object]]:
    from playwright.sync_api._generated import Browser

    from tests.harness.browser import one_chromium_per_module
    from tests.harness.call_pair import CallPair

    new_page = Browser.new_page

    def recording_page(self: Browser, *args: object, **kwargs: object) -> object:
        page = new_page(self, *args, **kwargs)
        page.add_init_script(RECORDER)
        return page

    Browser.new_page = recording_page  # type: ignore[method-assign]
    try:
        with one_chromium_per_module(), tempfile.TemporaryDirectory() as folder:
            with CallPair(Path(folder), "record-1", door="rtcstats") as pair:
                pair.wait_connected_for(seconds)
                return [{"role": role, "at_ms": round(at_ms, 1), "sent": json.loads(text)}
                        for role, page in pair.pages.items()
                        for at_ms, text in page.evaluate("() => window.__rtcstatsSent")]
    finally:
        Browser.new_page = new_page  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    started = time.monotonic()
    lines = record(args.seconds)
    out = HERE / "chromium_call.jsonl"
    out.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
    print(f"{len(lines)} messages in {time.monotonic() - started:.0f} s → {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
