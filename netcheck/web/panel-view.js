// The panel's DOM: both legs (each cue's level now and a strip of its last windows), the active
// warnings in the hub's words with their advice, the end-to-end estimate, the history, and whether
// the stream is live. Everything from the network goes in as text (textContent), never as markup.
// Automation contract (docs/in-session.md): [data-warning-cue][data-leg][data-level][data-source] per
// active warning (source "call" when measured on the call itself, else "probe"), body[data-live] yes|no,
// [data-history][data-leg][data-cue] per history entry, article.leg[data-source] for the source that
// leads the leg and its .leg-path line (the probe's verdict while the call leads).

import { applyTexts, fill } from "./texts.js";
import { CUES, LEGS, LEVELS, STRIP_WINDOWS, sourceOf } from "./panel-state.js";

const STALE_AFTER_S = 30;
const DEFAULT_WINDOW_S = 5;

const $ = (id) => document.getElementById(id);

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function clockTime(at) {
  const date = new Date(at);
  if (Number.isNaN(date.getTime())) return "–";
  return date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
}

export function age(seconds) {
  return seconds < 90 ? fill("age_s", { value: Math.round(seconds) }) : fill("age_min", { value: Math.round(seconds / 60) });
}

/** '2.5 %', '29.8 fps', '+40 ms': a figure as the agent measured it; '' when there is none. */
export function figure(value, unit, signed = false) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "";
  const digits = Math.abs(value) >= 10 ? 0 : 1;
  const number = `${signed && value > 0 ? "+" : ""}${value.toFixed(digits)}`;
  return unit ? `${number}\u00a0${unit}` : number;
}

/** The hub's words as they come, with a number kept on one line with its unit ("8 %", "410 ms"). */
export function words(text) {
  return text.replace(/(\d) (%|ms|fps|s\b)/g, "$1\u00a0$2");
}

function levelWord(level) {
  return fill(`level.${LEVELS.includes(level) ? level : "unknown"}`);
}

export class PanelView {
  constructor(sessionId) {
    this.sessionId = sessionId;
  }

  build() {
    $("heading").textContent = fill("panel_heading", { id: this.sessionId });
    document.title = `${fill("panel_title")} · ${this.sessionId}`;
    $("legs").replaceChildren(...LEGS.map((leg) => this.buildLeg(leg)));
    this.renderStripHeads(null);
  }

  buildLeg(leg) {
    const box = $("leg-template").content.firstElementChild.cloneNode(true);
    box.dataset.leg = leg;
    box.querySelector("h2").id = `leg-${leg}-h`;
    box.querySelector("h2").textContent = fill(`leg.${leg}`);
    box.setAttribute("aria-labelledby", `leg-${leg}-h`);
    applyTexts(box);
    const rows = CUES.map((cue) => {
      const row = element("tr");
      row.dataset.cue = cue;
      const name = element("th");
      name.scope = "row";
      name.append(element("span", "cue-name", fill(`panel.cue.${cue}`)), element("span", "figure"));
      const now = element("td");
      const word = element("span", "level", levelWord("unknown"));
      word.dataset.level = "unknown";
      now.append(word);
      const stripCell = element("td");
      const strip = element("div", "strip");
      strip.setAttribute("role", "img");  // an image needs its words before the leg's first window, too
      strip.setAttribute("aria-label", fill("strip_label_empty", { cue: fill(`panel.cue.${cue}`) }));
      stripCell.append(strip);
      row.append(name, now, stripCell);
      return row;
    });
    box.querySelector("tbody").replaceChildren(...rows);
    return box;
  }

  legBox(leg) {
    return document.querySelector(`article.leg[data-leg="${leg}"]`);
  }

  renderLive(status) {
    const live = status.state === "live";
    document.body.dataset.live = live ? "yes" : "no";
    let text = fill("live.yes");
    if (status.state === "connecting") text = fill("live.connecting");
    if (status.state === "reconnecting") {
      const seconds = Math.max(1, Math.round((status.retryInMs ?? 0) / 1000));
      text = `${fill("live.no", { seconds })} (${fill(`live.reason.${status.reason}`)})`;
    }
    // a live region (role=status): rewritten only when its words change, or a screen reader repeats them
    if ($("live-text").textContent !== text) $("live-text").textContent = text;
    $("live").dataset.state = status.state;
  }

  renderLeg(state, leg) {
    const box = this.legBox(leg);
    const summary = state.summaries[leg];
    box.dataset.level = summary ? levelOf(summary.window.level) : "unknown";
    this.renderSource(state, leg);
    const cues = summary?.window?.cues ?? {};
    const strip = state.strips[leg];
    const minutes = stripMinutesLabel(state, leg);
    for (const row of box.querySelectorAll("tbody tr")) {
      const cue = row.dataset.cue;
      const verdict = cues[cue] && typeof cues[cue] === "object" ? cues[cue] : {};
      const level = levelOf(verdict.level);
      const word = row.querySelector(".level");
      word.dataset.level = level;
      word.textContent = levelWord(level);
      const metric = typeof verdict.deciding_metric === "string" ? fill(`metric.${verdict.deciding_metric}`) : "";
      const value = figure(verdict.value, typeof verdict.unit === "string" ? verdict.unit : "",
        verdict.deciding_metric === "av_skew_ms");
      row.querySelector(".figure").textContent = value ? `${metric.startsWith("metric.") ? "" : metric} ${value}`.trim() : "";
      renderStrip(row.querySelector(".strip"), strip.map((point) => point.cues[cue]), fill(`panel.cue.${cue}`), minutes);
    }
    this.renderStripHeads(state);
    this.renderAges(state);
  }

  /** Which source the leg's figures come from; while the call leads, the probe's verdict beside it. */
  renderSource(state, leg) {
    const box = this.legBox(leg);
    const summary = state.summaries[leg];
    const source = summary ? sourceOf(summary) : "probe";
    box.dataset.source = source;
    const line = box.querySelector(".leg-source");
    line.hidden = !summary;
    line.textContent = fill(`leg_source.${source}`);
    const path = box.querySelector(".leg-path");
    const probe = source === "call" ? state.probeSummaries[leg] : undefined;
    path.hidden = !probe;
    if (!probe) return;
    const level = levelOf(probe.window.level);
    path.dataset.level = level;
    path.textContent = fill("leg_path", { level: levelWord(level) });
  }

  renderStripHeads(state) {
    const minutes = state ? Math.max(...LEGS.map((leg) => Number(stripMinutesLabel(state, leg)))) : defaultMinutes();
    for (const head of document.querySelectorAll(".strip-head")) head.textContent = fill("strip_column", { minutes });
  }

  /** Ages change every second without an event: the legs' "updated … ago" and the last event's. */
  renderAges(state) {
    for (const leg of LEGS) {
      const status = this.legBox(leg).querySelector(".leg-status");
      const summary = state.summaries[leg];
      const ageS = state.legAgeS(leg);
      if (!summary) {
        status.dataset.legStatus = "waiting";
        status.textContent = fill("leg_waiting");
        continue;
      }
      const stale = ageS > STALE_AFTER_S;
      status.dataset.legStatus = stale ? "stale" : "fresh";
      const use = ["video", "audio_only", "phone"].includes(summary.window.recommendation)
        ? summary.window.recommendation : "unknown";
      status.textContent = `${fill("leg_use", { use: fill(`use.${use}`) })} · ${fill(stale ? "leg_stale" : "leg_updated", { age: age(ageS) })}`;
    }
  }

  renderWarnings(state) {
    const active = [...state.active.values()].sort((a, b) => b.id - a.id);
    $("active").replaceChildren(...active.map((event) => {
      const item = element("li", "warning");
      item.dataset.warningCue = event.cue;
      item.dataset.leg = event.leg;
      item.dataset.level = levelOf(event.level);
      item.dataset.source = sourceOf(event);
      const head = element("p", "warning-head");
      head.append(element("span", "warning-cue", fill(`panel.cue.${event.cue}`)),
        element("span", "warning-when", fill(`warning_since.${sourceOf(event)}`,
          { leg: fill(`leg_short.${event.leg}`), time: clockTime(event.at) })));
      item.append(head, element("p", "warning-message", words(event.message)));
      if (event.advice) item.append(element("p", "warning-advice", words(event.advice)));
      return item;
    }));
    $("no-warnings").hidden = active.length > 0;
  }

  renderHistory(state) {
    $("history-list").replaceChildren(...state.history.map((event) => {
      const item = element("li");
      item.dataset.history = event.type;
      item.dataset.leg = event.leg;
      item.dataset.cue = event.cue;
      item.dataset.level = levelOf(event.level);
      item.dataset.source = sourceOf(event);
      const time = element("time", "when", clockTime(event.at));
      time.dateTime = event.at;
      const what = `${fill(`leg_short.${event.leg}`)} · ${fill(`panel.cue.${event.cue}`)} · ${fill(`history.${event.type}`)}`
        + (sourceOf(event) === "call" ? ` · ${fill("history_on_call")}` : "");
      item.append(time, element("span", "what", what), element("span", "message", words(event.message)));
      return item;
    }));
    $("history-empty").hidden = state.history.length > 0;
  }

  /** A new warning, read out by screen readers at once and once: the active list is no live region. */
  announce(event, kind) {
    $("announcer").textContent = fill(kind === "raised" ? "announce_raised" : "announce_cleared", { message: event.message });
  }

  /** figures: the server's [{metric, value, unit, level}], or null while a leg is missing. */
  renderEstimate(figures) {
    const list = $("estimate-figures");
    const shown = (figures ?? []).filter((entry) => typeof entry.value === "number");
    list.hidden = shown.length === 0;
    $("estimate-waiting").hidden = shown.length > 0;
    list.replaceChildren(...shown.flatMap((entry) => {
      const value = element("dd");
      const level = element("span", "level", figure(entry.value, entry.unit));
      level.dataset.level = levelOf(entry.level);
      value.append(level, element("span", "visually-hidden", ` (${levelWord(entry.level)})`));
      const term = element("dt", "", fill(`estimate.${entry.metric}`));
      term.dataset.metric = entry.metric;
      return [term, value];
    }));
  }
}

function levelOf(value) {
  return LEVELS.includes(value) ? value : "unknown";
}

function defaultMinutes() {
  return Math.round((STRIP_WINDOWS * DEFAULT_WINDOW_S) / 60);
}

function stripMinutesLabel(state, leg) {
  const minutes = state.stripMinutes(leg);
  return minutes > 0 ? String(Math.max(1, Math.round(minutes))) : String(defaultMinutes());
}

/** One cell per window, oldest left; height and colour both carry the level (and the label says it). */
function renderStrip(strip, levels, cueName, minutes) {
  const counts = Object.fromEntries(LEVELS.map((level) => [level, 0]));
  const cells = levels.map((level) => {
    counts[level] += 1;
    const cell = element("span", "cell");
    cell.dataset.level = level;
    return cell;
  });
  strip.replaceChildren(...cells);
  strip.setAttribute("aria-label", fill("strip_label", { cue: cueName, minutes, ...counts }));
}
