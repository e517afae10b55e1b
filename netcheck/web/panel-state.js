// What the panel shows, folded from the hub's events in arrival order (the page's twin of
// netcheck/session/watch.py WatchState): each leg's latest summary and its last windows' cue levels, the
// active warnings, and the raised/cleared history. No judging: levels are the agents' and the
// hub's words are shown as they come.

export const LEGS = ["client", "therapist"];
/** A session's legs (netcheck/tokens.py LEGS, mirrored: the pages' one copy). */
export const CUES = ["facial_expression", "vocal_tone", "conversational_timing", "lip_sync"];
export const LEVELS = ["good", "fair", "poor", "unknown"];
export const STRIP_WINDOWS = 36;
/** The strip's length: 3 minutes of the agent's default 5 s windows. */
const MAX_HISTORY = 200;

const level = (value) => (LEVELS.includes(value) ? value : "unknown");

export class PanelState {
  constructor(now = () => Date.now()) {
    this.now = now;
    /** The latest summary per leg. */
    this.summaries = {};
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
      this.active.set(`${leg}/${event.cue}`, event);
      return "raised";
    }
    this.active.delete(`${leg}/${event.cue}`);
    return "cleared";
  }

  isActive(event) {
    return this.active.get(`${event.leg}/${event.cue}`) === event;
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

function historyKey(event) {
  return `${event.type}/${event.leg}/${event.cue}/${event.at}`;
}
