// Step 4: speed and delay under load, as the CLI measures them: 4 streams per direction against
// the throughput endpoints, 2 s each unless the server's plan says otherwise (main.js), while the
// voice channel keeps echoing, so the delay a voice sees on a loaded link (bufferbloat) is measured
// too. The server counts what crossed the link by the test ids and tells the page its figure; the
// page's own count is the fallback. Slow start is not measured, bytes nor delay: the server says
// how long it lasts (/v1/info `throughput_ramp_s`, the CLI's own ramp), so the page, the server and
// the CLI skip the same.

import { percentile, round, sleep } from "./util.js";

const STREAMS = 4;
const DOWNLOAD_BYTES = 1 << 30;
const UPLOAD_CHUNK_BYTES = 1 << 20;
const STREAM_MBPS = 50;
/** Each upload stream is paced to 50 Mbit/s, as the CLI paces its own (netcheck/net/httpio.py) and the server
 * its downloads: 4 streams measure up to 200 Mbit/s, plenty for a video session, without a loopback or
 * LAN test starving the server's CPU (which would read as delay under load). */

const uploadBodies = [];

/** One request body per stream, sent again and again while the phase lasts. A Blob: Chromium 156 sent an
 * ArrayBuffer body at about 100 Mbit/s on loopback and a Blob at 2,600 (a streamed body needs HTTP/2). */
function payload(stream) {
  if (!uploadBodies[stream]) {
    const bytes = new Uint8Array(UPLOAD_CHUNK_BYTES);
    for (let offset = 0; offset < bytes.length; offset += 65536) {
      crypto.getRandomValues(bytes.subarray(offset, offset + 65536));  // incompressible
    }
    uploadBodies[stream] = new Blob([bytes], { type: "application/octet-stream" });
  }
  return uploadBodies[stream];
}

function testId() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

async function serverCount(api, path) {
  try {
    const response = await api.fetch(path, { cache: "no-store" });
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  }
}

async function downloadStream(api, id, signal, counter) {
  try {
    const response = await api.fetch(`/v1/throughput/download?bytes=${DOWNLOAD_BYTES}&test=${id}`, { signal, cache: "no-store" });
    if (!response.ok || !response.body) return;
    const reader = response.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      counter.bytes += value.byteLength;
    }
  } catch {
    /* aborted at the end of the phase: the usual way out */
  }
}

async function uploadStream(api, id, signal, deadlineMs, stream) {
  const body = payload(stream);
  const startMs = performance.now();
  for (let sent = 0; performance.now() < deadlineMs && !signal.aborted; sent += body.size) {
    const dueMs = startMs + (sent * 8) / (STREAM_MBPS * 1000);
    if (dueMs > performance.now()) await sleep(dueMs - performance.now());
    if (performance.now() >= deadlineMs || signal.aborted) return;
    try {
      const response = await api.fetch(`/v1/throughput/upload/${id}`, {
        method: "POST", body, signal, headers: { "Content-Type": "application/octet-stream" },
      });
      await response.arrayBuffer();
    } catch {
      return;
    }
  }
}

/** The server's ramp in ms (/v1/info), or null when it did not say: then the page has no figure of its own. */
async function rampMsOf(api) {
  const info = await api.info();
  return typeof info?.throughput_ramp_s === "number" ? info.throughput_ramp_s * 1000 : null;
}

async function phase(api, voice, direction, rampMs, phaseMs) {
  const id = testId();
  const stopEchoes = voice ? voice.startLoad() : null;
  const controller = new AbortController();
  const startMs = performance.now();
  const deadlineMs = startMs + phaseMs;
  const counter = { bytes: 0 };
  let rampBytes = 0;
  const rampTimer = rampMs !== null ? setTimeout(() => { rampBytes = counter.bytes; }, rampMs) : null;
  const streams = Array.from({ length: STREAMS }, (_, stream) => direction === "download"
    ? downloadStream(api, id, controller.signal, counter)
    : uploadStream(api, id, controller.signal, deadlineMs, stream));
  await sleep(phaseMs);
  const measuredBytes = counter.bytes - rampBytes;
  controller.abort();
  clearTimeout(rampTimer);
  await Promise.all(streams);
  if (stopEchoes) await stopEchoes();
  const rtts = voice && rampMs !== null ? voice.loadRttsBetween(startMs + rampMs, deadlineMs) : [];
  const count = await serverCount(api, `/v1/throughput/${direction === "download" ? "download" : "upload"}/${id}`);
  let mbps = typeof count?.mbps === "number" ? count.mbps : null;  // the server's figure, from its own count
  if (mbps === null && direction === "download" && rampMs !== null) {
    mbps = (measuredBytes * 8) / ((phaseMs - rampMs) / 1000) / 1e6;  // no count of the server's: the page's own
  }
  return { id, mbps: round(mbps, 2), loadedRttMs: round(percentile(rtts, 0.95), 2) };
}

/** The contract's `throughput`; `voice` (may be null) times the delay under load; each phase lasts `phaseMs`. */
export async function runSpeed(api, voice, onPhase, phaseMs) {
  const rampMs = await rampMsOf(api);
  onPhase("download", null);
  const down = await phase(api, voice, "download", rampMs, phaseMs);
  onPhase("upload", down);
  const up = await phase(api, voice, "upload", rampMs, phaseMs);
  onPhase("done", up);
  return {
    download_test_id: down.id,
    upload_test_id: up.id,
    download_mbps: down.mbps,
    upload_mbps: up.mbps,
    idle_rtt_ms: voice ? round(percentile(voice.idleRtts(), 0.95), 2) : null,
    loaded_rtt_down_ms: down.loadedRttMs,
    loaded_rtt_up_ms: up.loadedRttMs,
  };
}
