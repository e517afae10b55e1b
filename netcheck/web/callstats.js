// netcheck's call-stats module (issue 25): a clinic's own video page follows its call with it.
//
//   import { watchCall } from "https://NODE/web/callstats.js";
//   const watcher = watchCall(peerConnection, { token });   // the session token of this person's role
//   …
//   watcher.stop();
//
// Every 5 s it samples the call's getStats and posts a snapshot of the whitelisted fields, as the
// browser gives them (counters since each stream began), to the node that served this module:
// POST /v1/sessions/{sid}/legs/{role}/call. The node takes the deltas and judges them; nothing is
// computed or judged here (no thresholds in JavaScript). A field this browser lacks is not sent,
// and the node leaves its metric unknown. No dependencies, no framework. Wire format and bounds:
// docs/design-notes.md, "The call itself (issue 25)". Tests for this module come next session.

const EVERY_MS = 5000;
const MAX_PEERS = 4;
const MAX_ENTRIES = 24;
const FIELDS = {
  "inbound-rtp": ["kind", "packetsReceived", "packetsLost", "jitter", "framesDecoded", "frameHeight",
    "freezeCount", "totalFreezesDuration", "totalInterFrameDelay", "totalSamplesReceived", "concealedSamples",
    "silentConcealedSamples", "jitterBufferDelay", "jitterBufferEmittedCount"],
  "outbound-rtp": ["kind", "packetsSent", "framesSent", "frameHeight", "qualityLimitationReason",
    "qualityLimitationDurations"],
  "remote-inbound-rtp": ["kind", "localId", "fractionLost", "jitter", "roundTripTime", "totalRoundTripTime",
    "roundTripTimeMeasurements"],
  "candidate-pair": ["currentRoundTripTime", "availableOutgoingBitrate"],
};
const DURATIONS = ["none", "cpu", "bandwidth", "other"];

function claims(token) {
  // The token's own payload says the session and the role; the node verifies the signature.
  const payload = String(token).split(".")[1] || "";
  const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(payload.length / 4) * 4, "="));
  const { sid, role } = JSON.parse(json);
  return { sid, role };
}

function selectedPairId(report) {
  for (const stats of report.values()) {
    if (stats.type === "transport" && stats.selectedCandidatePairId) return stats.selectedCandidatePairId;
  }
  for (const stats of report.values()) {
    if (stats.type === "candidate-pair" && stats.nominated && stats.state === "succeeded") return stats.id;
  }
  return null;
}

function entry(stats) {
  const out = { type: stats.type, id: String(stats.id).slice(0, 64), timestamp: stats.timestamp };
  for (const name of FIELDS[stats.type]) {
    const value = stats[name];
    if (value === undefined || value === null) continue;
    if (name === "qualityLimitationDurations") {
      out[name] = Object.fromEntries(DURATIONS.filter((k) => typeof value[k] === "number").map((k) => [k, value[k]]));
    } else if (typeof value === "number" ? Number.isFinite(value) : typeof value === "string") {
      out[name] = value;
    }
  }
  return out;
}

async function snapshotOf(pc, index) {
  const report = await pc.getStats();
  const pair = selectedPairId(report);
  const stats = [];
  for (const s of report.values()) {
    if (!(s.type in FIELDS)) continue;
    if (s.type === "candidate-pair" && s.id !== pair) continue;
    if (s.type !== "candidate-pair" && s.kind !== "audio" && s.kind !== "video") continue;
    stats.push(entry(s));
  }
  return { pc: `pc${index}`, stats };
}

export function watchCall(peerConnection, { token, node = new URL(import.meta.url).origin, everyMs = EVERY_MS } = {}) {
  const peers = Array.isArray(peerConnection) ? peerConnection.slice(0, MAX_PEERS) : [peerConnection];
  const { sid, role } = claims(token);
  const url = `${node}/v1/sessions/${encodeURIComponent(sid)}/legs/${encodeURIComponent(role)}/call`;
  let seq = 0;
  let stopped = false;
  let waitMs = everyMs;
  let timer = null;

  async function tick() {
    if (stopped) return;
    try {
      const snapshots = await Promise.all(peers.filter((pc) => pc.connectionState !== "closed").map(snapshotOf));
      let room = MAX_ENTRIES;
      for (const snap of snapshots) {
        snap.stats = snap.stats.slice(0, Math.max(0, room));
        room -= snap.stats.length;
      }
      if (snapshots.length) {
        const response = await fetch(url, {
          method: "POST",
          headers: { "Authorization": `Bearer ${token}`, "Content-Type": "application/json" },
          body: JSON.stringify({ v: 1, seq: seq++, peers: snapshots }),
        });
        // 429: the node asks for a pause; 401/403/404: this token cannot follow this call, so stop
        if ([401, 403, 404].includes(response.status)) stopped = true;
        const retry = Number(response.headers.get("Retry-After"));
        waitMs = response.status === 429 && retry > 0 ? retry * 1000 : everyMs;
      }
    } catch (error) {
      waitMs = everyMs; // the node is away: the next snapshot spans the gap (the node takes deltas)
    }
    if (!stopped) timer = setTimeout(tick, waitMs);
  }

  timer = setTimeout(tick, 0);
  return {
    stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
    },
  };
}
