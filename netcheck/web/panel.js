// The therapist's live panel (/session/{id}#token=…): both legs, active warnings with advice, the
// history, notifications, and a link that measures the therapist's own leg in a tab of its own. Reads
// the hub's SSE stream (panel-stream.js), folds it (panel-state.js), shows it (panel-view.js), alerts
// (panel-alerts.js). State for automation: docs/in-session.md.

import { applyTexts, fill } from "./texts.js";
import { Api } from "./api.js";
import { refusalKey, sessionIdFromPath, showRefused } from "./panel-token.js";
import { takeToken } from "./util.js";
import { EventStream } from "./panel-stream.js";
import { PanelState } from "./panel-state.js";
import { PanelView } from "./panel-view.js";
import { Alerts } from "./panel-alerts.js";
import { Estimate } from "./panel-estimate.js";

/** A warning raised longer ago than this (a panel opened mid-session replays the hub's history) is shown, not notified. */
const NOTIFY_MAX_AGE_MS = 120_000;
const TICK_MS = 1000;

const $ = (id) => document.getElementById(id);

function init() {
  applyTexts();
  const sessionId = sessionIdFromPath();
  const token = sessionId ? takeToken(sessionId) : null;
  if (!sessionId || !token) {
    showRefused("refused.no_token");
    return;
  }
  const state = new PanelState();
  const view = new PanelView(sessionId);
  const alerts = new Alerts({ button: $("notify"), note: $("notify-note"), sound: $("sound") });
  const estimate = new Estimate(new Api(token, () => {}), sessionId, (figures) => view.renderEstimate(figures));
  view.build();
  alerts.init();
  $("report-link").href = `/session/${sessionId}/report#token=${encodeURIComponent(token)}`;
  // "Also check my connection": the session's tab page measures the token's leg, here the therapist's own
  $("own-leg-link").href = `/session/${sessionId}/client#token=${encodeURIComponent(token)}`;
  $("content").hidden = false;
  document.body.dataset.state = "watching";

  const onEvents = (events) => {
    const raised = [];
    const legs = new Set();
    let warnings = false;
    for (const event of events) {
      const change = state.apply(event);
      if (change === "summary") legs.add(event.leg);
      if (change === "raised" || change === "cleared") warnings = true;
      if (change === "raised") raised.push(event);
      if (change === "cleared") {
        alerts.cleared(event);
        view.announce(event, "cleared");
      }
    }
    for (const leg of legs) view.renderLeg(state, leg);
    if (legs.size) estimate.update(state);
    if (warnings) {
      view.renderWarnings(state);
      view.renderHistory(state);
    }
    // only what is still active once the batch is in: a replay's raised-then-cleared says nothing now
    for (const event of raised.filter((event) => state.isActive(event) && isRecent(event))) {
      view.announce(event, "raised");
      alerts.raised(event, fill("notification_title", { leg: fill(`leg.${event.leg}`), cue: fill(`panel.cue.${event.cue}`) }));
    }
    document.body.dataset.lastEventId = String(state.lastId);
  };

  const stream = new EventStream(`/v1/sessions/${sessionId}/events`, sessionId, token, {
    onEvents,
    onStatus: (status) => view.renderLive(status),
    onRefused: (refusal) => {
      stream.stop();
      showRefused(refusalKey(refusal));
    },
  });
  stream.start();
  setInterval(() => view.renderAges(state), TICK_MS);
}

function isRecent(event) {
  const at = Date.parse(event.at);
  return Number.isNaN(at) || Date.now() - at < NOTIFY_MAX_AGE_MS;
}

init();
