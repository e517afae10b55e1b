"""Two headless Chromiums in a real WebRTC call with each other, followed by netcheck (issue 25).

    with CallPair(tmp_path, session_id) as pair:       # the client's Chromium in a ClientNamespace
        pair.namespace.drop_udp_randomly(80, OPUS)    # 8 % of the client's UDP
        pair.panel                                     # the therapist's panel (a Playwright page)

The "clinic's video app" is a second origin: a minimal call page and its WebSocket signalling, served
by a tiny aiohttp app (`python -m tests.harness.call_pair app`, a subprocess: Playwright's sync API
owns the test thread's loop) on 127.0.0.1 in the root namespace and, through a TCP forwarder inside
the client's namespace (`… forward`), on 127.0.0.1 there too: both browsers see the one origin
http://127.0.0.1:PORT, a secure context, which `netcheck serve --call-origin` allows. The page loads
the node's module exactly as docs/in-session.md says (`import { watchCall } from "NODE/web/callstats.js"`,
`watchCall(pc, { token })`). The node binds the namespace's root end, so both browsers reach it.
Media flows directly between the browsers (host candidates, no STUN): the client's over the veth,
where the namespace's nftables rules act. Fake camera and microphone (tests/harness/browser.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from netcheck.tokens import create_token
from tests.harness import browser as browsers
from tests.harness.browser import chromium, namespaced_chromium, one_chromium_per_module
from tests.harness.netns import ClientNamespace
from tests.harness.ports import free_port
from tests.harness.rtcstats_client import rtcstats_bundle
from tests.harness.servers import REPO, ServerProcess, start_serve, stop, subprocess_env
from tests.harness.tcp import pipe

OPUS = 111
"""Chromium's payload type for Opus: the client's audio RTP packets, counted apart by the namespace's drop."""
SECRET = "call-pair-secret-0123456789abcdef"
CALL_TIMEOUT_S = 30.0
MAX_SIGNAL_BYTES = 64 * 1024
AUTOPLAY_ARG = "--autoplay-policy=no-user-gesture-required"
"""The remote audio and video play without a click: the receiver's jitter buffer is drained as in a real call."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Clinic video (test)</title></head>
<body data-call="starting">
<video id="remote" autoplay playsinline></video>
<script type="module">
const params = new URLSearchParams(location.hash.slice(1));
const role = params.get("role");
BEFORE_THE_CALL
const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
const pc = new RTCPeerConnection();
for (const track of stream.getTracks()) pc.addTrack(track, stream);
pc.ontrack = (event) => { document.getElementById("remote").srcObject = event.streams[0]; };
pc.onconnectionstatechange = () => { document.body.dataset.call = pc.connectionState; };
const signal = new WebSocket(`${location.origin.replace("http", "ws")}/signal/${role}`);
const send = (message) => signal.send(JSON.stringify(message));
pc.onicecandidate = (event) => { if (event.candidate) send({ candidate: event.candidate }); };
signal.onmessage = async ({ data }) => {
  const message = JSON.parse(data);
  if (message.ready) {
    await pc.setLocalDescription();
    send({ description: pc.localDescription });
  } else if (message.description) {
    await pc.setRemoteDescription(message.description);
    if (message.description.type === "offer") {
      await pc.setLocalDescription();
      send({ description: pc.localDescription });
    }
  } else if (message.candidate) {
    await pc.addIceCandidate(message.candidate);
  }
};
AFTER_THE_CALL
window.callPeer = pc;
</script>
</body></html>
"""
"""The clinic's call page; DOORS fill in how netcheck follows its call."""

DOORS: dict[str, tuple[str, str]] = {
    # netcheck's module, loaded exactly as docs/in-session.md says
    "module": ('import { watchCall } from "NODE/web/callstats.js";',
               'window.callWatcher = watchCall(pc, { token: params.get("token") });'),
    # the real @jitsi/rtcstats client, started as lib-jitsi-meet starts it (modules/statistics/RTCStats:
    # the trace, connect, the identity with Jitsi's config and the participant's display name, then the
    # wrapper, before the app makes its peer connection) with Jitsi Meet's config.js lines of
    # docs/in-session.md (rtcstatsEndpoint, rtcstatsPollInterval 5000, enableDisplayNameInStats)
    "rtcstats": ("""import { traceInit, rtcstatsInit } from "/rtcstats.js";
const config = { hosts: { domain: location.host }, enableDisplayNameInStats: true,
                 analytics: { rtcstatsEnabled: true, rtcstatsEndpoint: "NODE_WS/v1/rtcstats", rtcstatsPollInterval: 5000 } };
const room = params.get("room");
const trace = traceInit({ endpoint: config.analytics.rtcstatsEndpoint, meetingFqn: room, onCloseCallback: () => {} });
trace.connect(false);
trace.identity("identity", null, { ...config, endpointId: crypto.randomUUID().slice(0, 8), confName: room,
                                   displayName: params.get("name"), meetingUniqueId: crypto.randomUUID(),
                                   isBreakoutRoom: false, localId: crypto.randomUUID() });
rtcstatsInit({ statsEntry: trace.statsEntry }, { pollInterval: config.analytics.rtcstatsPollInterval });""",
                 "window.callTrace = trace;"),
}
ROOM = "therapy-room-7"
"""The clinic's room for the call (its Jitsi conference name): bound to the session before the call."""
NAMES = {"therapist": "Dr Rivera", "client": "Sam"}
"""The display names the rtcstats door's room binding gives each role."""


# --- the clinic's app and the forwarder (subprocesses) ---------------------------------------------

def call_page(node_url: str, door: str) -> str:
    """The clinic's call page followed through `door` (a key of DOORS) by the node at `node_url`."""
    before, after = DOORS[door]
    page = PAGE.replace("BEFORE_THE_CALL", before).replace("AFTER_THE_CALL", after)
    return page.replace("NODE_WS", node_url.replace("http", "ws", 1)).replace("NODE", node_url)


def clinic_app(node_url: str, door: str = "module", rtcstats_bundle: Path | None = None) -> Any:
    """The call page and its signalling: a WebSocket per role, relayed to the other; the therapist
    is told `ready` (and makes the offer) once both are there. `rtcstats_bundle`: the npm client,
    served as /rtcstats.js (the rtcstats door's page imports it)."""
    from aiohttp import web

    sockets: dict[str, web.WebSocketResponse] = {}
    text = call_page(node_url, door)

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def client_module(request: web.Request) -> web.Response:
        if rtcstats_bundle is None:
            raise web.HTTPNotFound()
        return web.Response(body=rtcstats_bundle.read_bytes(), content_type="text/javascript")

    async def signal(request: web.Request) -> web.WebSocketResponse:
        role = request.match_info["role"]
        other = "client" if role == "therapist" else "therapist"
        socket = web.WebSocketResponse(max_msg_size=MAX_SIGNAL_BYTES, heartbeat=10)
        await socket.prepare(request)
        sockets[role] = socket
        if other in sockets and "therapist" in sockets:
            await sockets["therapist"].send_str(json.dumps({"ready": True}))
        async for message in socket:
            peer = sockets.get(other)
            if peer is not None and not peer.closed:
                await peer.send_str(message.data)
        if sockets.get(role) is socket:
            del sockets[role]
        return socket

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/rtcstats.js", client_module)
    app.router.add_get("/signal/{role:(client|therapist)}", signal)
    return app


async def forward(listen: tuple[str, int], target: tuple[str, int]) -> None:
    """Every TCP connection to `listen` piped to `target`, both ways, until either side closes."""
    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(accepted, *listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def _main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.call_pair")
    commands = parser.add_subparsers(dest="command", required=True)
    app = commands.add_parser("app")
    app.add_argument("--node", required=True)
    app.add_argument("--port", type=int, required=True)
    app.add_argument("--host", action="append", required=True)
    app.add_argument("--door", choices=sorted(DOORS), default="module")
    app.add_argument("--rtcstats-bundle", type=Path)
    fwd = commands.add_parser("forward")
    fwd.add_argument("--port", type=int, required=True)
    fwd.add_argument("--to", required=True)
    args = parser.parse_args(argv)
    if args.command == "app":
        from aiohttp import web

        web.run_app(clinic_app(args.node, args.door, args.rtcstats_bundle), host=args.host, port=args.port,
                    print=lambda *_: print("ready", flush=True))
    else:
        asyncio.run(forward(("127.0.0.1", args.port), (args.to, args.port)))


# --- the pair, for tests ---------------------------------------------------------------------------

def _ready(process: subprocess.Popen, what: str) -> subprocess.Popen:
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        stop(process)
        raise RuntimeError(f"the call pair's {what} did not start")
    return process


class CallPair:
    """The node, the clinic's app, the client's namespace and both Chromiums in a connected call, and
    the therapist's panel open; a context manager. `token(role)` mints the session's tokens as
    `netcheck token create` does. `door`: how the node follows the call (a key of DOORS); through the
    rtcstats door the room is first bound to the session with each role's display name (NAMES), as
    `netcheck session bind-room` binds it."""

    def __init__(self, folder: Path, session_id: str, extra_config: str = "",
                 client_cgroup: Path | None = None, door: str = "module") -> None:
        """`client_cgroup`: the `cgroup.procs` of a CpuQuota the client's Chromium runs in (a busy computer)."""
        self.folder = folder
        self.session_id = session_id
        self.door = door
        self.extra_config = extra_config
        self.client_cgroup = client_cgroup
        self.stack = contextlib.ExitStack()
        self.namespace = ClientNamespace()
        self.app_port = free_port()
        self.node: ServerProcess | None = None
        self.pages: dict[str, Any] = {}
        self.panel: Any = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    def token(self, role: str, ttl_s: float = 3600) -> str:
        return create_token(SECRET.encode(), self.session_id, role, ttl_s)

    def __enter__(self) -> CallPair:
        try:
            self._start()
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def _process(self, argv: list[str], what: str, namespace: bool = False) -> subprocess.Popen:
        command = [sys.executable, "-m", "tests.harness.call_pair", *argv]
        process = subprocess.Popen(self.namespace.command(command) if namespace else command, cwd=REPO,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.stack.callback(stop, process)
        return _ready(process, what)

    def _start(self) -> None:
        if not browsers._MODULE_POOL:  # two Chromiums need one Playwright driver
            self.stack.enter_context(one_chromium_per_module())
        ns = self.stack.enter_context(self.namespace)
        home = self.folder / "node"
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(self.extra_config)
        self.node = start_serve("--bind", ns.root_address, "--call-origin", self.origin,
                                env=subprocess_env(NETCHECK_SECRET=SECRET, NETCHECK_HOME=str(home),
                                                   NETCHECK_ICE_HOST_ADDRESSES=ns.root_address))
        self.stack.callback(stop, self.node.process)
        door = ["--door", self.door]
        if self.door == "rtcstats":
            door += ["--rtcstats-bundle", str(rtcstats_bundle(self.folder / "rtcstats.js"))]
            self.bind_room()
        self._process(["app", "--node", self.node.http_url, "--port", str(self.app_port),
                       "--host", "127.0.0.1", "--host", ns.root_address, *door], "clinic app")
        self._process(["forward", "--port", str(self.app_port), "--to", ns.root_address], "forwarder", namespace=True)
        therapist = self.stack.enter_context(chromium(extra=(AUTOPLAY_ARG,)))
        client = self.stack.enter_context(chromium(executable=namespaced_chromium(ns, self.folder, self.client_cgroup),
                                                   extra=(AUTOPLAY_ARG,)))
        self.panel = therapist.new_page()
        self.panel.goto(f"{self.node.http_url}/session/{self.session_id}#token={self.token('therapist')}")
        self.panel.wait_for_selector("body[data-live='yes']", timeout=20_000)
        for role, browser in (("client", client), ("therapist", therapist)):
            page = browser.new_page()
            page.goto(f"{self.origin}/#role={role}&token={self.token(role)}&room={ROOM}&name={NAMES[role]}")
            self.pages[role] = page
        for page in self.pages.values():
            page.wait_for_selector("body[data-call='connected']", timeout=CALL_TIMEOUT_S * 1000)

    def bind_room(self) -> None:
        """`PUT /v1/sessions/{id}/rooms/{room}` with the therapist's token: the room, its names, 1 h."""
        assert self.node is not None
        body = json.dumps({"expires_s": 3600, "therapist_name": NAMES["therapist"], "client_name": NAMES["client"]})
        request = urllib.request.Request(f"{self.node.http_url}/v1/sessions/{self.session_id}/rooms/{ROOM}",
                                         data=body.encode(), method="PUT",
                                         headers={"Authorization": f"Bearer {self.token('therapist')}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200, response.status

    def stats(self, role: str) -> list[dict[str, Any]]:
        """The call's getStats in `role`'s browser now (RTP streams only), for diagnostics and truth."""
        return self.pages[role].evaluate(
            "async () => [...(await window.callPeer.getStats()).values()]"
            ".filter((s) => s.type.endsWith('-rtp'))")

    def wait_connected_for(self, seconds: float) -> None:
        """Let the call run; fail at once if a browser's call drops."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for role, page in self.pages.items():
                state = page.get_attribute("body", "data-call")
                if state in ("failed", "closed"):
                    raise RuntimeError(f"the {role}'s call went {state}")
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


if __name__ == "__main__":
    _main(sys.argv[1:])
