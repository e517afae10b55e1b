// Step 2: a real call with the clinic's media peer (POST /v1/av/offer): the page sends its camera and microphone
// up; the server's marked tracks come down and are measured here: getStats for what arrived, and lip sync as played
// (frame indexes read at display time, burst onsets timed in an AudioWorklet on the output clock: sound must run).

import { fill } from "./texts.js";
import { selectedPair } from "./path.js";
import { delta, lossPct, percentile, round, sleep } from "./util.js";

// netcheck/av/markers.py, mirrored: the frame-index code and the marker timing
const SYNC_BITS = [1, 0, 1, 1];
const INDEX_BITS = 16;
const CHECK_BITS = 4;
const FIRST_MARKER_S = 0.5;
const MARKER_PERIOD_S = 1.0;
const ONSET_THRESHOLD = 6000 / 32768;
const ONSET_REFRACTORY_S = 0.3;
const PAIRING_WINDOW_MS = 500;
const MARKER_LATE_FRAMES = 2;
const MAX_FRAMES = 3000;
/** A marker frame the display skipped is timed by one of the next two frames, minus their distance. */

const LIP_SYNC_WARM_UP_MS = 2500;
/** Chromium's audio/video synchronisation settles within the first seconds of a call (seen: the first
 * markers 30–60 ms further apart than the rest); a session is lived after that, so lip sync is the
 * skew of the markers shown after it. */
const LIP_SYNC_PIPELINE_MS = -57;
/** The skew this page reads when the server's markers are in sync, removed from every skew: the median
 * of 10 calibration runs (audio_offset_ms 0 and +80, 640x360@30, headless Chromium against
 * `netcheck serve` on loopback: −64…−46 ms), validated on the held-out offsets −150, −60, +40, +120
 * (12 runs: error −13…+11 ms, SD 6.7; tests/test_browser_page.py). About half is Chromium's own A/V
 * sync leaving the sound behind (its estimatedPlayoutTimestamps differ by 21–40 ms: aiortc's sender
 * reports pair an RTP time with a send time), half the page's way of timing sound (a WebAudio tap after
 * the media element's renderer, on WebAudio's output clock). See docs/browser-page.md. */

/** Chromium-based engines, the ones LIP_SYNC_PIPELINE_MS was fitted on, by a feature only they have (UA Client
 * Hints' brands). Elsewhere lip sync is not measured: Firefox reads −247 ms in sync (docs/browser-page.md). */
const lipSyncCalibratedHere = () => (navigator.userAgentData?.brands ?? []).some(({ brand }) => brand === "Chromium");

export const DEFAULT_FORMAT = "640x360@30";
/** What the server sends down: 720p costs the server (encoding in Python) and a 2-core client enough CPU
 * that the audio jitter buffer grew and lip sync wandered by 100 ms between runs; 360p held it within
 * 15 ms (docs/browser-page.md). The camera still goes up at up to 1280x720. */
const GATHER_TIMEOUT_MS = 3000;
const CONNECT_TIMEOUT_MS = 10_000;

export function parseFormat(text) {
  const match = /^(\d{2,4})x(\d{2,4})@(\d{1,2})$/.exec(text ?? "");
  if (!match) return null;
  const [width, height, fps] = match.slice(1).map(Number);
  return { text, width, height, fps };
}

function checkValue(index) {
  let ones = 0;
  for (let bits = index; bits; bits >>= 1) ones += bits & 1;
  return (ones + (index >> 12) * 5 + 3) % 16;
}

/** The frame index painted by markers.paint_code in a row of RGBA pixels, or null. */
export function readCode(row, width) {
  const block = Math.max(4, Math.floor(width / 28));
  const bits = [];
  for (let position = 0; position < SYNC_BITS.length + INDEX_BITS + CHECK_BITS; position++) {
    const x = block * (2 + position) + Math.floor(block / 2);
    const luma = 0.299 * row[4 * x] + 0.587 * row[4 * x + 1] + 0.114 * row[4 * x + 2];
    bits.push(luma >= 128 ? 1 : 0);
  }
  if (SYNC_BITS.some((bit, i) => bits[i] !== bit)) return null;
  let index = 0;
  for (const bit of bits.slice(SYNC_BITS.length, SYNC_BITS.length + INDEX_BITS)) index = index * 2 + bit;
  let check = 0;
  for (const bit of bits.slice(-CHECK_BITS)) check = check * 2 + bit;
  return check === checkValue(index) ? index : null;
}

/** Lip sync as played: marker frames' display times against burst onsets' output times. */
class LipSync {
  constructor(video, audioContext, format) {
    this.video = video;
    this.audioContext = audioContext;
    this.format = format;
    this.markerDisplayMs = new Map();
    this.frames = [];  // [index, display time ms] of every frame whose code was read
    this.onsetsMs = [];
    this.framesRead = 0;
    this.stopped = false;
    this.missing = [];
    const block = Math.max(4, Math.floor(format.width / 28));
    this.block = block;
    this.canvas = document.createElement("canvas");
    this.canvas.width = format.width;
    this.canvas.height = block * 3;
    this.context = this.canvas.getContext("2d", { willReadFrequently: true });
  }

  async start(remoteStream) {
    this.startMs = performance.now();
    if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) this.missing.push("no_frame_callback");
    const timesSound = this.audioContext.audioWorklet && this.audioContext.getOutputTimestamp;
    if (this.audioContext.state !== "running" || !timesSound) this.missing.push(timesSound ? "sound_not_started" : "no_audio_worklet");
    if (!this.missing.length && !lipSyncCalibratedHere()) this.missing.push("lip_sync_not_calibrated");
    if (this.missing.length) return;
    await this.audioContext.audioWorklet.addModule("/web/onset-worklet.js");
    const audio = new MediaStream(remoteStream.getAudioTracks());
    this.source = this.audioContext.createMediaStreamSource(audio);
    this.node = new AudioWorkletNode(this.audioContext, "netcheck-onset", {
      processorOptions: { threshold: ONSET_THRESHOLD, refractoryS: ONSET_REFRACTORY_S },
    });
    this.silence = this.audioContext.createGain();
    this.silence.gain.value = 0;  // timed as played, not heard: the beeps would only disturb the client
    this.source.connect(this.node).connect(this.silence).connect(this.audioContext.destination);
    this.node.port.onmessage = ({ data }) => {
      const stamp = this.audioContext.getOutputTimestamp();
      if (!stamp.performanceTime) return;  // the output clock has not started yet
      this.onsetsMs.push(stamp.performanceTime + (data.onsetS - stamp.contextTime) * 1000);
    };
    this.video.requestVideoFrameCallback((now, meta) => this.onFrame(meta));
  }

  onFrame(meta) {
    if (this.stopped) return;
    const { width, height, fps } = this.format;
    const frameWidth = meta.width || this.video.videoWidth;
    const frameHeight = meta.height || this.video.videoHeight;
    if (frameWidth && frameHeight) {
      // scale the received frame (which the path may have shrunk) to the sender's geometry
      const stripHeight = this.canvas.height * (frameHeight / height);
      this.context.drawImage(this.video, 0, 0, frameWidth, stripHeight, 0, 0, width, this.canvas.height);
      const y = this.block * 2 + Math.floor(this.block / 2);
      const index = readCode(this.context.getImageData(0, y, width, 1).data, width);
      if (index !== null) {
        this.framesRead++;
        if (this.frames.length < MAX_FRAMES) this.frames.push([index, meta.expectedDisplayTime]);
        const first = Math.round(FIRST_MARKER_S * fps);
        const period = Math.max(1, Math.round(MARKER_PERIOD_S * fps));
        const late = (index - first) % period;
        if (index >= first && late <= MARKER_LATE_FRAMES) {
          const marker = index - late;
          if (!this.markerDisplayMs.has(marker)) {
            this.markerDisplayMs.set(marker, meta.expectedDisplayTime - (late * 1000) / fps);
          }
        }
      }
    }
    this.video.requestVideoFrameCallback((now, next) => this.onFrame(next));
  }

  stop() {
    this.stopped = true;
    this.source?.disconnect();
    this.node?.disconnect();
  }

  /** Each marker frame's own display time minus the nearest burst onset (+: sound first, the BT.1359
   * sign), the pipeline offset removed; the markers of the warm-up, or (default) those after it.
   * Diagnostics only: a marker shown one refresh late or replaced moves it by a frame (33 ms). */
  skewsMs(warmUp = false) {
    const skews = [];
    for (const displayMs of this.markerDisplayMs.values()) {
      if ((displayMs < this.startMs + LIP_SYNC_WARM_UP_MS) !== warmUp) continue;
      let nearest = null;
      for (const onsetMs of this.onsetsMs) {
        if (nearest === null || Math.abs(onsetMs - displayMs) < Math.abs(nearest - displayMs)) nearest = onsetMs;
      }
      if (nearest !== null && Math.abs(nearest - displayMs) <= PAIRING_WINDOW_MS) {
        skews.push(displayMs - nearest - LIP_SYNC_PIPELINE_MS);
      }
    }
    return skews;
  }

  /** The lip-sync figure: the median over the onsets after the warm-up, on the video's display clock. */
  skewMs() {
    const skews = this.frameClockSkewsMs();
    return skews.length ? percentile(skews, 0.5) : null;
  }

  /** The display clock of the video: the mean of (display time − capture time) over the frames read
   * after the warm-up, its lowest and highest tenth left out, so that no single frame's vsync or
   * replacement decides. A mean, not the median: display times come in whole refreshes (16.7 ms), and
   * the median jumps a whole refresh where the mean moves by the share of frames shown a refresh late. */
  videoOffsetMs() {
    const { fps } = this.format;
    const offsets = this.frames
      .filter(([, displayMs]) => displayMs >= this.startMs + LIP_SYNC_WARM_UP_MS)
      .map(([index, displayMs]) => displayMs - (index * 1000) / fps);
    if (!offsets.length) return null;
    const [low, high] = [percentile(offsets, 0.1), percentile(offsets, 0.9)];
    const kept = offsets.filter((offset) => offset >= low && offset <= high);
    const clock = kept.reduce((sum, offset) => sum + offset, 0) / kept.length;
    return { clock, median: percentile(offsets, 0.5), spread: high - low, count: offsets.length };
  }

  /** Each burst onset against the display time its marker frame has on that clock (+: sound first). */
  frameClockSkewsMs() {
    const video = this.videoOffsetMs();
    if (!video) return [];
    const { fps } = this.format;
    const first = Math.round(FIRST_MARKER_S * fps);
    const period = Math.max(1, Math.round(MARKER_PERIOD_S * fps));
    const skews = [];
    for (const onsetMs of this.onsetsMs) {
      if (onsetMs < this.startMs + LIP_SYNC_WARM_UP_MS) continue;
      const frame = ((onsetMs - video.clock) * fps) / 1000;
      const marker = first + period * Math.round((frame - first) / period);
      if (marker < first) continue;
      const displayMs = video.clock + (marker * 1000) / fps;
      if (Math.abs(displayMs - onsetMs) <= PAIRING_WINDOW_MS) skews.push(displayMs - onsetMs - LIP_SYNC_PIPELINE_MS);
    }
    return skews;
  }
}

/** Resolves true once `ready()` holds (checked now and at each `event` of `target`), false after `timeoutMs`. */
export function waitFor(target, event, ready, timeoutMs) {
  return new Promise((resolve) => {
    if (ready()) return resolve(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    const listener = () => ready() && done(true);
    function done(value) {
      clearTimeout(timer);
      target.removeEventListener(event, listener);
      resolve(value);
    }
    target.addEventListener(event, listener);
  });
}

/** Counters of one receiving stream, read from getStats. */
function inbound(stats, kind) {
  for (const report of stats.values()) if (report.type === "inbound-rtp" && report.kind === kind) return report;
  return null;
}

/** The `ice_servers` /v1/info hands out (`serve --browser-turn`), or none. */
export async function iceServersFrom(api) {
  const info = await api.info();
  return Array.isArray(info?.ice_servers) ? info.ice_servers : [];
}

export class Call {
  constructor(api, { stream, audioOffsetMs, format, audioContext }) {
    this.api = api;
    this.stream = stream;
    this.audioOffsetMs = audioOffsetMs;
    this.format = format;
    this.audioContext = audioContext;
    this.sessionId = null;
    this.connected = false;
    this.diagnostics = null;
    /** How the lip-sync figure came about (per-marker skews, buffers, latencies): for support and tests, not posted. */
    this.remote = document.getElementById("remote");
    this.lipSync = new LipSync(this.remote, audioContext, format);
  }

  /** Offer, answer, connect; resolves when the first frame of the server's video is shown (or not). */
  async connect() {
    const pc = new RTCPeerConnection({ iceServers: await this.iceServers() });
    this.pc = pc;
    for (const kind of ["audio", "video"]) {
      const track = kind === "audio" ? this.stream.getAudioTracks()[0] : this.stream.getVideoTracks()[0];
      if (track) pc.addTransceiver(track, { direction: "sendrecv", streams: [this.stream] });
      else pc.addTransceiver(kind, { direction: "recvonly" });
    }
    this.channel = pc.createDataChannel("netcheck-voice", { ordered: false, maxRetransmits: 0 });
    const remoteStream = new MediaStream();
    pc.addEventListener("track", (event) => {
      const stream = event.streams[0];
      for (const track of (stream ?? { getTracks: () => [event.track] }).getTracks()) {
        if (!remoteStream.getTrackById(track.id)) remoteStream.addTrack(track);
      }
    });
    await pc.setLocalDescription(await pc.createOffer());
    await waitFor(pc, "icegatheringstatechange", () => pc.iceGatheringState === "complete", GATHER_TIMEOUT_MS);
    const answer = await this.api.json("/v1/av/offer", {
      type: "offer", sdp: pc.localDescription.sdp, video: this.format.text,
      audio_offset_ms: this.audioOffsetMs, client: "browser",
    });
    this.sessionId = answer.session_id ?? null;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    this.connected = await waitFor(pc, "connectionstatechange", () => pc.connectionState === "connected", CONNECT_TIMEOUT_MS);
    if (!this.connected) return false;
    // the server's audio must reach a media element for the browser to pull it (muted: timed, not heard)
    this.remote.srcObject = remoteStream;
    this.remote.hidden = false;  // hidden until connected; frame callbacks need it displayed
    const firstFrame = new Promise((resolve) => {
      if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) this.remote.requestVideoFrameCallback(() => resolve(true));
      else this.remote.addEventListener("playing", () => resolve(true), { once: true });
    });
    this.remote.play().catch(() => {});
    const shown = await Promise.race([firstFrame, sleep(CONNECT_TIMEOUT_MS).then(() => false)]);
    if (!shown) return false;
    this.firstFrameMs = performance.now();
    this.startStats = await pc.getStats();
    await this.lipSync.start(remoteStream);
    return true;
  }

  /** STUN/TURN servers for the browser, when the server hands them out as `ice_servers` in /v1/info
   * (`serve --browser-turn`: a browser behind a UDP-blocking firewall reaches the media peer through
   * TURN over TCP/TLS, with credentials that expire; docs/browser-check.md, "TURN for browsers"). */
  async iceServers() {
    return iceServersFrom(this.api);
  }

  /** Refresh the figures on screen every second until `untilMs` (performance.now() time). */
  async watchUntil(untilMs, show) {
    while (performance.now() < untilMs) {
      await sleep(Math.min(1000, untilMs - performance.now()));
      show(await this.downstream());
    }
  }

  /** The contract's `downstream` since the first frame (av_skew_ms: so far; see finishLipSync). */
  async downstream() {
    if (!this.startStats) return null;
    const end = await this.pc.getStats();
    const seconds = (performance.now() - this.firstFrameMs) / 1000;
    const [v0, v1] = [inbound(this.startStats, "video"), inbound(end, "video")];
    const [a0, a1] = [inbound(this.startStats, "audio"), inbound(end, "audio")];
    const pair = selectedPair(end);
    const frames = delta(v1, v0, "framesDecoded");
    const emitted = delta(a1, a0, "jitterBufferEmittedCount");
    const samples = delta(a1, a0, "totalSamplesReceived");
    return {
      duration_s: round(seconds, 2),
      video_fps: frames !== null && seconds > 0 ? round(frames / seconds, 1) : round(v1?.framesPerSecond ?? null),
      video_width: v1?.frameWidth ?? null,
      video_height: v1?.frameHeight ?? null,
      video_freezes: delta(v1, v0, "freezeCount"),
      video_frozen_ms: round((delta(v1, v0, "totalFreezesDuration") ?? NaN) * 1000),
      video_loss_pct: lossPct(v1, v0),
      audio_loss_pct: lossPct(a1, a0),
      audio_jitter_ms: round((a1?.jitter ?? NaN) * 1000, 2),
      jitter_buffer_ms: emitted ? round((delta(a1, a0, "jitterBufferDelay") / emitted) * 1000) : null,
      concealed_pct: samples ? round((100 * delta(a1, a0, "concealedSamples")) / samples, 2) : null,
      video_bitrate_kbps: seconds > 0 ? round((8 * (delta(v1, v0, "bytesReceived") ?? NaN)) / seconds / 1000) : null,
      audio_bitrate_kbps: seconds > 0 ? round((8 * (delta(a1, a0, "bytesReceived") ?? NaN)) / seconds / 1000) : null,
      rtt_ms: round((pair?.currentRoundTripTime ?? NaN) * 1000, 2),
      av_skew_ms: round(this.lipSync.skewMs()),  // so far; the posted figure is finishLipSync()'s
    };
  }

  /** Stop timing lip sync; the skew over the markers shown after the warm-up, and how it came about. */
  async finishLipSync() {
    this.lipSync.stop();
    const stats = await this.pc.getStats();
    const [a0, a1] = [inbound(this.startStats, "audio"), inbound(stats, "audio")];
    const [v0, v1] = [inbound(this.startStats, "video"), inbound(stats, "video")];
    const bufferMs = (start, end) => {
      const emitted = delta(end, start, "jitterBufferEmittedCount");
      return emitted ? round((delta(end, start, "jitterBufferDelay") / emitted) * 1000) : null;
    };
    this.diagnostics = {
      skews_ms: this.lipSync.frameClockSkewsMs().map((value) => round(value)),
      marker_frame_skews_ms: this.lipSync.skewsMs().map((value) => round(value)),
      warm_up_skews_ms: this.lipSync.skewsMs(true).map((value) => round(value)),
      video_display_offset: this.lipSync.videoOffsetMs(),
      pipeline_offset_ms: LIP_SYNC_PIPELINE_MS,
      markers_shown: this.lipSync.markerDisplayMs.size,
      onsets_heard: this.lipSync.onsetsMs.length,
      frames_read: this.lipSync.framesRead,
      playout_sync_ms: typeof v1?.estimatedPlayoutTimestamp === "number" && typeof a1?.estimatedPlayoutTimestamp === "number"
        ? round(v1.estimatedPlayoutTimestamp - a1.estimatedPlayoutTimestamp) : null,
      audio_jitter_buffer_ms: bufferMs(a0, a1),
      video_jitter_buffer_ms: bufferMs(v0, v1),
      audio_base_latency_ms: round(this.audioContext.baseLatency * 1000),
      audio_output_latency_ms: round((this.audioContext.outputLatency ?? NaN) * 1000),
    };
    return round(this.lipSync.skewMs());
  }

  /** What could not be measured in this browser, as text keys. */
  missing() {
    return this.lipSync.missing;
  }

  close() {
    this.lipSync.stop();
    this.pc?.close();
    this.remote.srcObject = null;
  }
}

/** Show the downstream figures in the call's list. */
export function showDownstream(figures) {
  if (!figures) return;
  const set = (id, text) => { document.getElementById(id).textContent = text; };
  const none = fill("not_measured");
  set("fig-fps", figures.video_fps !== null ? fill("fig_fps_value", { value: figures.video_fps }) : none);
  set("fig-size", figures.video_height ? fill("fig_size_value", { width: figures.video_width, height: figures.video_height }) : none);
  set("fig-freezes", figures.video_freezes !== null ? String(figures.video_freezes) : none);
  set("fig-loss", figures.video_loss_pct !== null || figures.audio_loss_pct !== null
    ? fill("fig_loss_value", { video: figures.video_loss_pct ?? "–", audio: figures.audio_loss_pct ?? "–" }) : none);
  set("fig-jitter", figures.audio_jitter_ms !== null ? fill("fig_ms_value", { value: figures.audio_jitter_ms }) : none);
  const skew = figures.av_skew_ms;
  set("fig-lipsync", skew !== null
    ? fill("fig_lipsync_value", { value: Math.round(Math.abs(skew)), direction: fill(skew >= 0 ? "lipsync_ahead" : "lipsync_behind") })
    : none);
}
