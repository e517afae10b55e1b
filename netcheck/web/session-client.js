// A session's tab (docs/in-session.md, "The client's tab" and "Also check my connection"): one peer
// connection with the clinic's server for as long as the session lasts, measuring the leg of the token's
// role — the client's, or the therapist's own when opened from the panel. The page sends a small test
// card and a light voice stream (the agent's 10 packets a second) and, every window, posts what only it
// can see — the replies it got, the server's picture as it arrived (getStats), its own sending. The
// server measures and judges; this page shows its answer as one badge: connection OK or weak.
// Automation: document.body.dataset.state (connecting, measuring, reconnecting, refused, replaced,
// error), document.body.dataset.role (client, therapist), #badge[data-connection] (pending, ok, weak,
// lost, stopped), #problem[data-problem].

import { TEXTS, applyTexts, fill } from "./texts.js";
import { Api } from "./api.js";
import { Refusal, refusalOf } from "./refusal.js";
import { iceServersFrom, waitFor } from "./call.js";
import { selectedPath } from "./path.js";
import { CARD, Card, Ticker, VoiceStream, windowFigures } from "./session-tab.js";
import { sleep, takeToken } from "./util.js";

const CARD_MAX_BITRATE = 150_000;
/** bits/s: a session's call shares this link; the measurement must not take much of it. */
const CONNECT_TIMEOUT_MS = 10_000;
const GATHER_TIMEOUT_MS = 3000;
const FAILED_REPORTS_BEFORE_RECONNECT = 3;
const RECONNECT_FIRST_MS = 2000;
const RECONNECT_MAX_MS = 30_000;

const $ = (id) => document.getElementById(id);

/** Whose leg this tab measures: "client" or "therapist". From the token until the server's answer names it. */
let role = "client";

/** A tab.* text in the words for this tab's person: `tab.therapist.…` when there is one, else `tab.…`. */
function say(key, values) {
  const own = key.replace(/^tab\./, `tab.${role}.`);
  return fill(role !== "client" && own in TEXTS ? own : key, values);
}

/** The role in the token's payload (`v1.<base64url JSON>.<signature>`, netcheck/tokens.py), read only to
 * choose the leg's path before the offer: the server checks the signature, refuses a token whose role is
 * not the path's, and its answer names the role. Anything unreadable is tried as the client's. */
function tokenRole(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(payload + "=".repeat((4 - (payload.length % 4)) % 4)));
    return claims?.role === "therapist" ? "therapist" : "client";
  } catch {
    return "client";
  }
}

/** Address the page to `whose` person: the texts, the title, and body[data-role]. */
function showRole(whose) {
  role = whose === "therapist" ? "therapist" : "client";
  document.body.dataset.role = role;
  for (const element of document.querySelectorAll("main [data-text]")) element.textContent = say(element.dataset.text);
  showBadge($("badge").dataset.connection);
}

function setState(state) {
  document.body.dataset.state = state;
}

/** The badge is a live region: its words are written only when they change, so that a screen reader
 * says "Connection OK" once, not again at every window. */
function showBadge(connection) {
  const badge = $("badge");
  badge.dataset.connection = connection;
  const words = say(`tab.badge.${connection}`);
  if (badge.textContent !== words) badge.textContent = words;
  $("weak-hint").hidden = connection !== "weak";
  document.title = `${say(`tab.badge.${connection}`)} · ${say("tab.title")}`;
}

function showBusy(seconds) {
  const busy = $("busy");
  busy.dataset.busy = String(seconds !== null);
  busy.hidden = seconds === null;
  if (seconds !== null) busy.textContent = say("tab.busy", { seconds });
}

/** Stop for good with one sentence: `problem` is a key of texts.js under tab.* (and a data-problem). */
function stop(state, problem, values) {
  setState(state);
  showBadge("stopped");
  const box = $("problem");
  box.dataset.problem = problem;
  box.textContent = say(`tab.${problem}`, values);
  box.hidden = false;
}

/** One leg: an offer, a peer connection, windows until it ends. `run()` resolves when it must be
 * opened again (the connection or the server went away) and throws a Refusal when it must not. */
class Leg {
  constructor(api, sessionId, settings) {
    this.api = api;
    this.sessionPath = `/v1/sessions/${encodeURIComponent(sessionId)}/legs`;
    this.base = `${this.sessionPath}/${role}`;
    this.settings = settings;
    this.ticker = new Ticker();
    this.failedReports = 0;
    this.index = 0;
  }

  async open() {
    const pc = new RTCPeerConnection({ iceServers: await iceServersFrom(this.api) });
    this.pc = pc;
    this.card = new Card();
    pc.addTransceiver(this.card.track, {
      direction: "sendrecv", streams: [this.card.stream],
      sendEncodings: [{ maxBitrate: CARD_MAX_BITRATE, maxFramerate: CARD.fps }],
    });
    this.voice = new VoiceStream(pc.createDataChannel("netcheck-voice", { ordered: false, maxRetransmits: 0 }));
    pc.addEventListener("track", (event) => {
      const picture = $("server-picture");
      picture.srcObject = event.streams[0] ?? new MediaStream([event.track]);
      picture.play().catch(() => {});
    });
    await pc.setLocalDescription(await pc.createOffer());
    await waitFor(pc, "icegatheringstatechange", () => pc.iceGatheringState === "complete", GATHER_TIMEOUT_MS);
    const response = await this.api.fetch(`${this.base}/offer`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp, ...this.settings }),
    });
    if (!response.ok) throw await refusalOf(response);
    const answer = await response.json();
    if (answer.role && answer.role !== role) showRole(answer.role);  // the server's word on whose leg it is
    this.base = `${this.sessionPath}/${role}`;
    this.legId = answer.leg_id;
    this.windowMs = answer.window_s * 1000;
    this.lateMs = answer.late_reply_ms;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    if (!await waitFor(pc, "connectionstatechange", () => pc.connectionState === "connected", CONNECT_TIMEOUT_MS)) {
      throw new Error("the connection to the clinic's server did not come up");
    }
    this.since = await pc.getStats();
    this.sinceMs = performance.now();
    this.ticker.every("frame", 1000 / CARD.fps, () => this.card.draw());
    this.ticker.every("voice", 1000 / answer.rate_pps, () => this.voice.send());
  }

  run() {
    return new Promise((resolve, reject) => {
      const end = (error) => {
        this.ticker.stop();
        if (error) reject(error);
        else resolve();
      };
      this.pc.addEventListener("connectionstatechange", () => {
        if (["failed", "closed"].includes(this.pc.connectionState)) end();
      });
      this.ticker.every("window", this.windowMs, () => this.report().then((ended) => {
        if (ended) end(ended instanceof Error ? ended : null);
      }));
    });
  }

  /** Post the window; true (or a Refusal) when the leg has ended. */
  async report() {
    if (this.reporting) return false;  // the previous window's post is still out
    this.reporting = true;
    try {
      const stats = await this.pc.getStats();
      const nowMs = performance.now();
      const figures = windowFigures(stats, this.since, (nowMs - this.sinceMs) / 1000);
      this.since = stats;
      this.sinceMs = nowMs;
      const body = {
        leg_id: this.legId, index: this.index++, voice: this.voice.report(nowMs, this.lateMs),
        ...figures, path: await selectedPath(this.pc),
      };
      let response;
      try {
        response = await fetch(`${this.base}/window`, {
          method: "POST", headers: this.api.headers({ "Content-Type": "application/json" }), body: JSON.stringify(body),
        });
      } catch {
        return ++this.failedReports >= FAILED_REPORTS_BEFORE_RECONNECT;
      }
      if (!response.ok) {
        const refusal = await refusalOf(response);
        if (refusal.kind === "not_found") return true;  // the server closed the leg (or restarted): open another
        if (refusal.final) return refusal;
        return ++this.failedReports >= FAILED_REPORTS_BEFORE_RECONNECT;
      }
      this.failedReports = 0;
      const answer = await response.json();
      showBadge(answer.connection === "weak" ? "weak" : "ok");
      setState("measuring");
      return false;
    } finally {
      this.reporting = false;
    }
  }

  /** The tab is going away: tell the server now rather than when it notices the silence. */
  leave() {
    if (this.legId) {
      fetch(`${this.base}/${this.legId}`, { method: "DELETE", headers: this.api.headers(), keepalive: true }).catch(() => {});
    }
    this.close();
  }

  close() {
    this.ticker.stop();
    this.card?.stop();
    this.pc?.close();
    $("server-picture").srcObject = null;
  }
}

/** The texts key (under tab.*) of a final refusal's one sentence, by its kind (refusal.js). */
const PROBLEMS = {
  replaced: "replaced", hub_disabled: "refused.disabled", role: "refused.role", expired: "refused.expired",
  missing: "refused.missing",
};

function settings() {
  const query = new URLSearchParams(location.search);
  const chosen = {};
  for (const [param, field] of [["window", "window_s"], ["rate", "rate_pps"]]) {
    const value = Number.parseFloat(query.get(param) ?? "");
    if (Number.isFinite(value)) chosen[field] = value;  // the server checks the range
  }
  return chosen;
}

async function measure(api, sessionId) {
  let waitMs = RECONNECT_FIRST_MS;
  let leg = null;
  addEventListener("pagehide", () => leg?.leave());
  for (;;) {
    leg = new Leg(api, sessionId, settings());
    try {
      await leg.open();
      waitMs = RECONNECT_FIRST_MS;
      await leg.run();
    } catch (error) {
      if (error instanceof Refusal && error.final) {
        leg.close();
        stop(error.kind === "replaced" ? "replaced" : "refused", PROBLEMS[error.kind] ?? "refused.invalid");
        return;
      }
      if (error instanceof Refusal && error.kind === "bad_request") {
        leg.close();
        stop("error", "error", { detail: error.message });
        return;
      }
    }
    leg.close();
    setState("reconnecting");
    showBadge("lost");
    await sleep(waitMs);
    waitMs = Math.min(RECONNECT_MAX_MS, waitMs * 2);
  }
}

function init() {
  applyTexts();
  showBadge("pending");
  const match = /^\/session\/([^/]+)\/client$/.exec(location.pathname);
  // kept for this tab only (sessionStorage, never localStorage): a reload takes over its leg and measures on
  const token = match ? takeToken(`${decodeURIComponent(match[1])}.tab`) : takeToken();
  showRole(token ? tokenRole(token) : "client");
  if (!token || !match) {
    stop("refused", "refused.missing");
    return;
  }
  setState("connecting");
  measure(new Api(token, showBusy), decodeURIComponent(match[1])).catch((error) => {
    stop("error", "error", { detail: error?.message ?? String(error) });
  });
}

init();
