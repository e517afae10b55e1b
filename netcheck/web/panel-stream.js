// The session hub's event stream (docs/session-hub.md) read with fetch(): EventSource cannot send the
// token in a header. After any drop (a network blip, a server restart) it reconnects with
// Last-Event-ID and a backoff of 0.5 s doubling to 10 s, as `netcheck watch` does; a stream that
// stays silent for 45 s (three missed keep-alives) is dropped and reconnected. A refused token
// (401, 403) or a server without a hub (404) ends it: retrying cannot help.

import { LEGS } from "./panel-state.js";
import { refusalOf } from "./refusal.js";
import { sleep } from "./util.js";

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10_000;
const READ_TIMEOUT_MS = 45_000;
const MAX_LINE_CHARS = 64 * 1024;
const EVENT_TYPES = new Set(["summary", "warning_raised", "warning_cleared"]);

/** SSE field rules of the HTML standard: text in, complete messages out; `lastId` survives reconnections. */
export class SseParser {
  constructor() {
    this.lastId = null;
    this.startStream();
  }

  /** Forget a line or message half-received on a previous connection. */
  startStream() {
    this.partial = "";
    this.data = [];
    this.event = "";
    this.pendingId = null;
  }

  /** The messages completed by `text`; throws when a line outgrows the bound (the stream is broken). */
  feed(text) {
    const lines = (this.partial + text).split(/\r\n|\n|\r/);
    this.partial = lines.pop();
    if (this.partial.length > MAX_LINE_CHARS) throw new Error("a line longer than 64 KiB");
    const messages = [];
    for (const line of lines) {
      const message = this.line(line);
      if (message) messages.push(message);
    }
    return messages;
  }

  line(line) {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null;  // the hub's keep-alive
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (name === "data") this.data.push(value);
    else if (name === "event") this.event = value;
    else if (name === "id" && !value.includes("\0")) this.pendingId = value;
    return null;
  }

  dispatch() {
    if (this.pendingId !== null) this.lastId = this.pendingId || null;
    const message = this.data.length ? { event: this.event, data: this.data.join("\n"), id: this.lastId } : null;
    this.data = [];
    this.event = "";
    this.pendingId = null;
    return message;
  }
}

/** The event of a message if it keeps to the contract, else null (skipped, never fatal). */
export function parseEvent(message, sessionId) {
  let event;
  try {
    event = JSON.parse(message.data);
  } catch {
    return null;
  }
  if (!event || typeof event !== "object" || !EVENT_TYPES.has(event.type) || !LEGS.includes(event.leg)) return null;
  if (!["", "message", event.type].includes(message.event)) return null;
  if ((event.session_id ?? sessionId) !== sessionId || typeof event.at !== "string") return null;
  if (!Number.isSafeInteger(event.id)) return null;
  if (event.type === "summary") return event.window && typeof event.window === "object" ? event : null;
  if (typeof event.advice !== "string") event.advice = "";
  return ["cue", "level", "message"].every((key) => typeof event[key] === "string") ? event : null;
}

export function nextBackoffMs(previousMs) {
  return previousMs === null ? BACKOFF_FIRST_MS : Math.min(BACKOFF_MAX_MS, previousMs * 2);
}

export class EventStream {
  /**
   * @param {string} url  the hub's events URL of the session
   * @param {{onEvents: (events: object[]) => void, onStatus: (status: object) => void,
   *          onRefused: (refusal: import("./refusal.js").Refusal) => void}} handlers
   *   status: {state: "connecting" | "live" | "reconnecting", retryInMs?, reason?}
   */
  constructor(url, sessionId, token, handlers) {
    this.url = url;
    this.sessionId = sessionId;
    this.token = token;
    this.handlers = handlers;
    this.parser = new SseParser();
    this.stopped = false;
    this.controller = null;
  }

  start() {
    this.run();
  }

  stop() {
    this.stopped = true;
    this.controller?.abort();
  }

  async run() {
    let backoffMs = null;
    this.handlers.onStatus({ state: "connecting" });
    while (!this.stopped) {
      const outcome = await this.connectOnce(() => { backoffMs = null; });
      if (outcome === "refused" || this.stopped) return;
      backoffMs = nextBackoffMs(backoffMs);
      this.handlers.onStatus({ state: "reconnecting", retryInMs: backoffMs, reason: outcome });
      await sleep(backoffMs);
    }
  }

  deliver(events) {
    try {
      this.handlers.onEvents(events);
    } catch (error) {
      console.error(error);  // the page's own fault: not a reason to drop the stream and replay
    }
  }

  /** One connection, until it ends; what ended it: "refused", or the reason for reconnecting. */
  async connectOnce(onLive) {
    const controller = new AbortController();
    this.controller = controller;
    let silent = false;
    let watchdog = null;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => { silent = true; controller.abort(); }, READ_TIMEOUT_MS);
    };
    try {
      arm();
      const response = await fetch(this.url, {
        headers: {
          Authorization: `Bearer ${this.token}`,
          Accept: "text/event-stream",
          // "0" on the first connection too: the hub replays what it holds, so a panel opened
          // mid-session shows the warnings already raised
          "Last-Event-ID": this.parser.lastId ?? "0",
        },
        cache: "no-store",
        signal: controller.signal,
      });
      if (!response.ok) {
        const refusal = await refusalOf(response);
        if (refusal.final) {
          this.handlers.onRefused(refusal);
          return "refused";
        }
        return refusal.kind === "busy" || refusal.kind === "unavailable" ? "busy" : "http";
      }
      if (!(response.headers.get("Content-Type") ?? "").startsWith("text/event-stream")) return "http";
      onLive();
      this.handlers.onStatus({ state: "live" });
      this.parser.startStream();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return "closed";
        arm();
        const events = this.parser.feed(value).map((message) => parseEvent(message, this.sessionId)).filter(Boolean);
        if (events.length) this.deliver(events);
      }
    } catch {
      return silent ? "silent" : (this.stopped ? "closed" : "unreachable");
    } finally {
      clearTimeout(watchdog);
      controller.abort();
    }
  }
}
