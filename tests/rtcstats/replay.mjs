// Runs the real @jitsi/rtcstats client (npm, installed into an ignored folder) as Jitsi Meet starts it
// (lib-jitsi-meet modules/RTCStats: traceInit({endpoint, meetingFqn}), connect(), identity("identity",
// null, {...config, endpointId, confName, displayName, ...}), rtcstatsInit({statsEntry}, {pollInterval})),
// against a scripted RTCPeerConnection whose getStats returns the reports of scenario.json, and prints
// every WebSocket message the client sends, one JSON line each: the fixtures tests/test_rtcstats_door.py
// replays. Usage: node --import ./register.mjs replay.mjs NODE_MODULES SCENARIO.json > out.jsonl
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [modules, scenarioPath] = process.argv.slice(2);
const scenario = JSON.parse(readFileSync(scenarioPath, "utf8"));
const out = [];

Object.defineProperty(globalThis, "navigator", { value: {
  userAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
}, configurable: true });
globalThis.window = globalThis;

class FakeWebSocket {
  static OPEN = 1; static CLOSED = 3;
  constructor(url, protocol) { this.readyState = 1; out.push({ url, protocol }); FakeWebSocket.last = this; }
  send(text) { out.push({ sent: JSON.parse(text) }); }
  close() { this.readyState = 3; }
}
globalThis.WebSocket = FakeWebSocket;

let snapshotIndex = 0;
class FakePeerConnection {
  constructor() { this.signalingState = "stable"; this.iceConnectionState = "connected"; this.listeners = {}; }
  addEventListener(name, fn) { this.listeners[name] = fn; }
  getStats() {
    const reports = scenario.snapshots[Math.min(snapshotIndex++, scenario.snapshots.length - 1)];
    return Promise.resolve(new Map(reports.map(r => [r.id, r])));
  }
}
globalThis.RTCPeerConnection = FakePeerConnection;

const base = pathToFileURL(`${modules}/@jitsi/rtcstats/`).href;
const traceInit = (await import(`${base}trace-ws.js`)).default;
const rtcstatsInit = (await import(`${base}rtcstats.js`)).default;

const trace = traceInit({ endpoint: scenario.endpoint, meetingFqn: scenario.room, onCloseCallback: () => {} });
rtcstatsInit({ statsEntry: trace.statsEntry }, { pollInterval: 20 });
trace.connect(false);
FakeWebSocket.last.onopen();
await FakeWebSocket.last.onmessage({ data: JSON.stringify({ type: "sn", body: { value: 0, state: "initial" } }) });
trace.identity("identity", null, { ...scenario.config, endpointId: "a1b2c3d4", confName: scenario.room,
                                    displayName: scenario.displayName, meetingUniqueId: "m-1", isBreakoutRoom: false,
                                    localId: "l-1" });
const pc = new RTCPeerConnection({ iceServers: [] });
await new Promise(resolve => setTimeout(resolve, 20 * scenario.snapshots.length + 15));
pc.signalingState = "closed";
trace.keepAlive();
for (const line of out) console.log(JSON.stringify(line));
process.exit(0);
