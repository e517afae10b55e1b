// What a session's tab sends and reads (session-client.js runs it): a clock that keeps time in the
// background, the small test card, the voice stream's echoes, and a window's figures from getStats.

import { selectedPair } from "./path.js";
import { delta, lossPct, round } from "./util.js";
import { KIND_ECHO, KIND_REPLY, message, parse } from "./voice.js";

export const CARD = { width: 320, height: 180, fps: 30 };
/** The tab's picture, as small as the server's: the path is measured, not the camera. */
const SEQ_MODULUS = 65536;
const MAX_REPORTED = 2000;
/** The server takes at most this many sends (and replies) in one report. */

/** Named ticks from a worker, whose timers a background tab does not slow down (session-ticker.js). */
export class Ticker {
  constructor() {
    this.handlers = new Map();
    try {
      this.worker = new Worker("/web/session-ticker.js");
      this.worker.onmessage = ({ data }) => this.handlers.get(data)?.();
    } catch {
      this.worker = null;  // no worker: the page's own timers (slowed in the background)
      this.intervals = new Map();
    }
  }

  every(name, everyMs, handler) {
    this.handlers.set(name, handler);
    if (this.worker) this.worker.postMessage({ name, everyMs });
    else this.intervals.set(name, setInterval(handler, everyMs));
  }

  stop() {
    this.handlers.clear();
    this.worker?.terminate();
    for (const interval of this.intervals?.values() ?? []) clearInterval(interval);
  }
}

/** A flat card with a square moving across it: a picture whose every frame travels, at a few tens of kbit/s. */
export class Card {
  constructor() {
    this.canvas = document.createElement("canvas");
    this.canvas.width = CARD.width;
    this.canvas.height = CARD.height;
    this.context = this.canvas.getContext("2d");
    this.stream = this.canvas.captureStream(0);  // 0: a frame when requestFrame() says so
    this.track = this.stream.getVideoTracks()[0];
    this.frame = 0;
    this.draw();
  }

  draw() {
    const { context } = this;
    const size = 24;
    context.fillStyle = "#606060";
    context.fillRect(0, 0, CARD.width, CARD.height);
    context.fillStyle = "#ebebeb";
    context.fillRect((this.frame * 4) % (CARD.width - size), (CARD.height - size) / 2, size, size);
    this.frame++;
    this.track.requestFrame?.();
  }

  stop() {
    this.track.stop();
  }
}

/** The voice stream: one 48-byte echo request per tick on the unreliable "netcheck-voice" channel. */
export class VoiceStream {
  constructor(channel) {
    this.channel = channel;
    this.seq = 0;
    this.pending = new Map();  // seq → [sent_ms, client_recv_ms | null], not reported yet, in sending order
    channel.binaryType = "arraybuffer";
    channel.addEventListener("message", (event) => this.onMessage(event.data, performance.now()));
  }

  send() {
    if (this.channel.readyState !== "open") return;
    const sentMs = performance.now();
    this.pending.delete(this.seq);  // 65536 sends ago, never reported: the seq is this one's now
    this.pending.set(this.seq, [sentMs, null]);
    if (this.pending.size > MAX_REPORTED) this.pending.delete(this.pending.keys().next().value);
    this.channel.send(message(KIND_ECHO, this.seq, sentMs));
    this.seq = (this.seq + 1) % SEQ_MODULUS;
  }

  onMessage(data, receivedMs) {
    const reply = parse(data);
    const entry = reply?.kind === KIND_REPLY ? this.pending.get(reply.seq) : undefined;
    if (entry && entry[1] === null && receivedMs >= entry[0]) entry[1] = receivedMs;  // a reply after its report: lost
  }

  /** The sends of `lateMs` ago and earlier that were not reported yet, with the replies they got. */
  report(nowMs, lateMs) {
    const us = (value) => round(value, 3);
    let firstSeq = null;
    const sentMs = [];
    const replies = [];
    for (const [seq, [sent, received]] of this.pending) {
      if (sent > nowMs - lateMs) break;
      firstSeq ??= seq;
      sentMs.push(us(sent));
      if (received !== null) replies.push([seq, us(received)]);
      this.pending.delete(seq);
    }
    return firstSeq === null ? null : { first_seq: firstSeq, sent_ms: sentMs, replies };
  }
}

function statsOf(stats, type, kind) {
  for (const report of stats.values()) if (report.type === type && report.kind === kind) return report;
  return null;
}

/** The window's figures from getStats: the server's picture as it arrived, and this tab's sending. */
export function windowFigures(end, start, seconds) {
  const [in1, in0] = [statsOf(end, "inbound-rtp", "video"), statsOf(start, "inbound-rtp", "video")];
  const [out1, out0] = [statsOf(end, "outbound-rtp", "video"), statsOf(start, "outbound-rtp", "video")];
  const remote = statsOf(end, "remote-inbound-rtp", "video");
  const kbps = (bytes) => (bytes !== null && seconds > 0 ? round((8 * bytes) / seconds / 1000) : null);
  const frames = delta(in1, in0, "framesDecoded");
  const pair = selectedPair(end);
  return {
    downstream: in1 ? {
      duration_s: round(seconds, 2),
      video_fps: frames !== null && seconds > 0 ? round(Math.max(0, frames) / seconds) : null,
      video_width: in1.frameWidth ?? null,
      video_height: in1.frameHeight ?? null,
      video_freezes: delta(in1, in0, "freezeCount"),
      video_frozen_ms: round((delta(in1, in0, "totalFreezesDuration") ?? NaN) * 1000),
      video_loss_pct: lossPct(in1, in0),
      video_bitrate_kbps: kbps(delta(in1, in0, "bytesReceived")),
      rtt_ms: round((pair?.currentRoundTripTime ?? NaN) * 1000, 2),
    } : null,
    upstream: out1 ? {
      quality_limitation: ["none", "cpu", "bandwidth"].includes(out1.qualityLimitationReason)
        ? out1.qualityLimitationReason : (out1.qualityLimitationReason ? "other" : null),
      video_bitrate_kbps: kbps(delta(out1, out0, "bytesSent")),
      rtt_ms: round((remote?.roundTripTime ?? NaN) * 1000, 2),
    } : null,
  };
}
