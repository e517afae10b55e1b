// The end-to-end estimate between the two people (delays add, losses compound): the page sends each
// leg's latest figures and the server answers with the figures judged by its thresholds
// (POST /v1/sessions/{id}/estimate; netcheck/quality/end_to_end.py). One request at a time, at most
// one every few seconds: both legs' summaries come every window. The probes' figures only: each
// probe measures one half (a person to the clinic), which the estimate adds up; a call's figures are
// the whole way between the two people already, and added to the other leg's they would count it twice.

import { LEGS } from "./panel-state.js";

const EVERY_MS = 4000;

export class Estimate {
  /** @param {import("./api.js").Api} api  @param {(figures: object[] | null) => void} show */
  constructor(api, sessionId, show) {
    this.path = `/v1/sessions/${sessionId}/estimate`;
    this.api = api;
    this.show = show;
    this.pending = false;
    this.again = false;
    this.lastAt = 0;
    this.state = null;
  }

  /** The legs' summaries changed. */
  update(state) {
    this.state = state;
    if (!LEGS.every((leg) => state.probeSummaries[leg])) {
      this.show(null);
      return;
    }
    if (this.pending) {
      this.again = true;
      return;
    }
    this.pending = true;
    setTimeout(() => this.ask(), Math.max(0, this.lastAt + EVERY_MS - Date.now()));
  }

  async ask() {
    const body = Object.fromEntries(LEGS.map((leg) => [leg, this.state.probeSummaries[leg].window.figures ?? null]));
    try {
      this.show((await this.api.json(this.path, body)).figures);
    } catch {
      // not live, or a server without the call: the legs and warnings are what matter; keep the last figures
    } finally {
      this.lastAt = Date.now();
      this.pending = false;
      if (this.again) {
        this.again = false;
        this.update(this.state);
      }
    }
  }
}
