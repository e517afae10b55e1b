// Step 3: the path a voice takes — the "netcheck-voice" data channel (unordered, no
// retransmissions), 50 small messages a second, each echoed by the server at once
// (docs/browser-check.md). The page only records: the server computes RTT, jitter and loss from
// the raw log it is sent, with the UDP probe's own definitions.

import { round, sleep } from "./util.js";

export const INTERVAL_MS = 20;
const MESSAGE_BYTES = 48;
export const KIND_ECHO = 1;
export const KIND_REPLY = 2;
const KIND_STATS = 3;
const KIND_STATS_REPLY = 4;
const MAX_SEQ = 65535;
const STATS_TRIES = 3;
const STATS_WAIT_MS = 200;
const LATE_REPLY_MS = 250;
/** After the last message, how long its reply may still come before the server's count is asked. */
const OPEN_TIMEOUT_MS = 5000;

export function message(kind, seq, sendMs) {
  const buffer = new ArrayBuffer(MESSAGE_BYTES);
  const view = new DataView(buffer);  // big-endian, as the contract says
  view.setUint8(0, 0x4e); // "N"
  view.setUint8(1, 0x56); // "V"
  view.setUint8(2, 1);
  view.setUint8(3, kind);
  view.setUint32(4, seq);
  view.setFloat64(16, sendMs);
  return buffer;
}

export function parse(data) {
  if (!(data instanceof ArrayBuffer) || data.byteLength !== MESSAGE_BYTES) return null;
  const view = new DataView(data);
  if (view.getUint8(0) !== 0x4e || view.getUint8(1) !== 0x56 || view.getUint8(2) !== 1) return null;
  return {
    kind: view.getUint8(3),
    seq: view.getUint32(4),
    serverRxCount: view.getUint32(8),
    clientSendMs: view.getFloat64(16),
    serverRecvMs: view.getFloat64(24),
    serverSendMs: view.getFloat64(32),
  };
}

function sleepUntil(targetMs) {
  return sleep(targetMs - performance.now());
}

export class VoiceProbe {
  constructor(channel) {
    this.channel = channel;
    this.sentMs = [];          // the voice step's requests: index = seq
    this.replies = [];         // [seq, client_recv_ms, server_recv_ms, server_send_ms]
    this.loadSentMs = new Map(); // seq → send time, for the echoes that time the delay under load
    this.loadRtts = [];        // [send_ms, rtt_ms]
    this.voiceSeqEnd = Infinity;
    this.nextSeq = 0;
    this.serverRxCount = null;
    this.statsWaiter = null;
    channel.binaryType = "arraybuffer";
    channel.addEventListener("message", (event) => this.onMessage(event.data, performance.now()));
  }

  async open() {
    if (this.channel.readyState === "open") return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), OPEN_TIMEOUT_MS);
      this.channel.addEventListener("open", () => { clearTimeout(timer); resolve(true); }, { once: true });
    });
  }

  onMessage(data, receivedMs) {
    const reply = parse(data);
    if (!reply) return;
    if (reply.kind === KIND_REPLY) {
      if (reply.seq < this.voiceSeqEnd) {
        if (reply.seq < this.sentMs.length) this.replies.push([reply.seq, receivedMs, reply.serverRecvMs, reply.serverSendMs]);
      } else if (this.loadSentMs.has(reply.seq)) {
        const sentMs = this.loadSentMs.get(reply.seq);
        this.loadRtts.push([sentMs, receivedMs - sentMs - (reply.serverSendMs - reply.serverRecvMs)]);
      }
    } else if (reply.kind === KIND_STATS_REPLY && this.statsWaiter) {
      this.statsWaiter(reply.serverRxCount);
    }
  }

  /** Send one request every 20 ms until `untilMs` or `stopped()`; `record(seq, sentMs)` for each. */
  async stream(untilMs, record, stopped = () => false) {
    const startMs = performance.now();
    for (let k = 0; ; k++) {
      const dueMs = startMs + k * INTERVAL_MS;
      if (dueMs >= untilMs || stopped() || this.nextSeq > MAX_SEQ) return;
      await sleepUntil(dueMs);
      if (this.channel.readyState !== "open") return;
      const seq = this.nextSeq++;
      const sentMs = performance.now();
      record(seq, sentMs);
      this.channel.send(message(KIND_ECHO, seq, sentMs));
    }
  }

  /** The voice step: `durationMs` of requests, then the server's count of what it received. */
  async run(durationMs, onProgress = () => {}) {
    const startMs = performance.now();
    const ticker = setInterval(() => onProgress(Math.min(1, (performance.now() - startMs) / durationMs)), 250);
    try {
      await this.stream(startMs + durationMs, (seq, sentMs) => { this.sentMs[seq] = sentMs; });
      this.voiceSeqEnd = this.nextSeq;
      await sleepUntil(performance.now() + LATE_REPLY_MS);
      this.serverRxCount = await this.askCount();
    } finally {
      clearInterval(ticker);
    }
  }

  async askCount() {
    const answer = new Promise((resolve) => { this.statsWaiter = resolve; });
    for (let attempt = 0; attempt < STATS_TRIES; attempt++) {
      if (this.channel.readyState !== "open") break;
      this.channel.send(message(KIND_STATS, 0, performance.now()));
      const count = await Promise.race([answer, sleepUntil(performance.now() + STATS_WAIT_MS).then(() => null)]);
      if (count !== null) return count;
    }
    return null;
  }

  /** Keep echoing (for the delay under load) until the returned function is called. */
  startLoad() {
    let stop = false;
    const running = this.stream(Infinity, (seq, sentMs) => this.loadSentMs.set(seq, sentMs), () => stop);
    return async () => { stop = true; await running; };
  }

  /** RTTs of the load echoes sent within [fromMs, toMs]. */
  loadRttsBetween(fromMs, toMs) {
    return this.loadRtts.filter(([sentMs]) => sentMs >= fromMs && sentMs <= toMs).map(([, rtt]) => rtt);
  }

  /** RTTs of the voice step's echoes, the server's turnaround removed. */
  idleRtts() {
    return this.replies.map(([seq, recvMs, serverRecvMs, serverSendMs]) => recvMs - this.sentMs[seq] - (serverSendMs - serverRecvMs));
  }

  /** The contract's `voice`: the raw log, rounded to µs. */
  report() {
    if (this.sentMs.length === 0) return null;
    const us = (value) => round(value, 3);
    return {
      interval_ms: INTERVAL_MS,
      sent_ms: this.sentMs.map(us),
      replies: this.replies.map(([seq, recv, serverRecv, serverSend]) => [seq, us(recv), us(serverRecv), us(serverSend)]),
      server_rx_count: this.serverRxCount,
    };
  }
}
