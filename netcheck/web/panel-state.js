// What the panel shows, folded from the hub's events in arrival order (the page's twin of
// netcheck/session/watch.py WatchState): each leg's latest summary and its last windows' cue levels, the
// active warnings, and the raised/cleared history. No judging: levels are the agents' and the
// hub's words are shown as they come. A leg may be measured twice: by netcheck's probe (the path to
// the clinic) and on the call itself (events with "source": "call", set by the server). While the
// call's windows come, the call leads the leg (its verdict, strip and warnings); the probe's latest
// window stays beside it as "the path to the clinic".

export const LEGS = ["client", "therapist"];
/** A session's legs (netcheck/tokens.py LEGS, mirrored: the pages' one copy). */
export const CUES = ["facial_expression", "vocal_tone", "conversational_timing", "lip_sync"];
export const LEVELS = ["good", "fair", "poor", "unknown"];
export const STRIP_WINDOWS = 36;
/** The strip's length: 3 minutes of the agent's default 5 s windows. */
const MAX_HISTORY = 200;
/** A call silent for this long (the module posts every 5 s) no longer leads its leg: the probe does again. */
export const CALL_LEADS_S = 30;

const level = (value) => (LEVELS.includes(value) ? value : "unknown");

export class PanelState {
  constructor(now = () => Date.now()) {
    this.now = now;
    /** The latest summary per leg of the source that leads it (the call's while it posts, else the probe's). */
    this.summaries = {};
    /** The latest probe summary per leg: "the path to the clinic" beside a call that leads. */
    this.probeSummaries = {};
    /** When (page clock, ms) each leg's latest call summary came. */
    this.callAt = {};
    /** When (page clock, ms) each leg's latest summary came: a leg whose agent went quiet shows its age. */
    this.receivedAt = {};
    /** Per leg, the last windows: [{cues: {cue: level}, windowS}], oldest first. */
    this.strips = { client: [], therapist: [] };
    /** Raised and not yet cleared warnings, by `leg/cue`. */
    this.active = new Map();
    /** Raised and cleared events, newest first. */
    this.history = [];
    this.seen = new Set();
    this.lastId = 0;
    this.lastEventAt = null;
  }

  /**
   * Fold one event in. Returns what changed ("summary", "raised", "cleared"), or null for an event
   * already seen: ids rise across server restarts, and a warning posted twice (an agent resending
   * after a lost answer) has the same leg, cue and time.
   */
  apply(event) {
    if (event.id <= this.lastId) return null;
    this.lastId = event.id;
    this.lastEventAt = this.now();
    const leg = event.leg;
    if (event.type === "summary") {
      if (sourceOf(event) === "call") this.callAt[leg] = this.lastEventAt;
      else this.probeSummaries[leg] = event;
      if (sourceOf(event) !== "call" && this.callLeads(leg)) return "summary";  // beside the call, not in its strip
      this.summaries[leg] = event;
      this.receivedAt[leg] = this.lastEventAt;
      const cues = event.window.cues && typeof event.window.cues === "object" ? event.window.cues : {};
      const levels = Object.fromEntries(CUES.map((cue) => [cue, level(cues[cue]?.level)]));
      const strip = this.strips[leg];
      strip.push({ cues: levels, windowS: Number(event.window.window_s) || 0 });
      if (strip.length > STRIP_WINDOWS) strip.shift();
      return "summary";
    }
    const key = historyKey(event);
    if (this.seen.has(key)) return null;
    this.seen.add(key);
    this.history.unshift(event);
    if (this.history.length > MAX_HISTORY) this.seen.delete(historyKey(this.history.pop()));
    if (event.type === "warning_raised") {
      this.active.set(activeKey(event), event);
      return "raised";
    }
    this.active.delete(activeKey(event));
    return "cleared";
  }

  isActive(event) {
    return this.active.get(activeKey(event)) === event;
  }

  /** Whether the call's own windows lead the leg now (one came within CALL_LEADS_S). */
  callLeads(leg) {
    const at = this.callAt[leg];
    return at !== undefined && this.now() - at <= CALL_LEADS_S * 1000;
  }

  /** Seconds since the leg's latest summary came, or null before the first. */
  legAgeS(leg) {
    const at = this.receivedAt[leg];
    return at === undefined ? null : Math.max(0, (this.now() - at) / 1000);
  }

  lastEventAgeS() {
    return this.lastEventAt === null ? null : Math.max(0, (this.now() - this.lastEventAt) / 1000);
  }

  /** The minutes the leg's strip covers (its windows' lengths added up). */
  stripMinutes(leg) {
    return this.strips[leg].reduce((sum, point) => sum + point.windowS, 0) / 60;
  }
}

/** "call" for what the server marked as measured on the call, else "probe" (agents, tabs). */
export function sourceOf(event) {
  return event.source === "call" ? "call" : "probe";
}

/** A call's warning and the probe's on the same cue are two warnings, each clearing on its own:
 * `leg/cue` for the probe's (the notifications' tags as before), `leg/cue/call` for the call's. */
export function activeKey(event) {
  return sourceOf(event) === "call" ? `${event.leg}/${event.cue}/call` : `${event.leg}/${event.cue}`;
}

function historyKey(event) {
  return `${event.type}/${event.leg}/${event.cue}/${event.at}/${sourceOf(event)}`;
}
