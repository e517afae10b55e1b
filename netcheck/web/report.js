// The session report page (/session/{id}/report#token=…): the server's report of the session
// (GET /v1/sessions/{id}/report, the same build_report as `netcheck session report`) for the
// clinical record: a timeline of the warnings per leg and cue, the warnings with how long each
// lasted, the minutes each cue spent at each level, and the checks made before the session.
// Prints on one A4 page (report.css). No personal data: the session's opaque id is its only name.
// State for automation: body[data-state] loading|ready|refused, window.netcheckReport.

import { applyTexts, fill } from "./texts.js";
import { refusalKey, sessionIdFromPath, showRefused } from "./panel-token.js";
import { refusalOf } from "./refusal.js";
import { takeToken } from "./util.js";
import { CUES, LEGS, LEVELS } from "./panel-state.js";
import { clockTime, element, words } from "./panel-view.js";

/** What fits one A4 page beside the timeline and the minutes; more are printed one line per leg and cue. */
const PRINT_WARNING_ROWS = 6;
const PRINT_CHECKS = 3;

const $ = (id) => document.getElementById(id);

function row(cells) {
  const tr = element("tr");
  tr.append(...cells.map((text) => element("td", "", text)));
  return tr;
}

export function duration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return fill("report_still_active");
  const whole = Math.round(seconds);
  if (whole < 60) return fill("duration_s", { value: whole });
  return fill("duration_min", { min: Math.floor(whole / 60), s: whole % 60 });
}

function zone(date) {
  const offset = -date.getTimezoneOffset();
  const hours = String(Math.floor(Math.abs(offset) / 60)).padStart(2, "0");
  return `UTC${offset < 0 ? "−" : "+"}${hours}:${String(Math.abs(offset) % 60).padStart(2, "0")}`;
}

const legCue = (leg, cue) => `${fill(`leg_short.${leg}`)} · ${fill(`panel.cue.${cue}`)}`;

function showSpan(report) {
  if (!report.first_at) return;
  const first = new Date(report.first_at);
  const minutes = Math.round((Date.parse(report.last_at) - first.getTime()) / 60000);
  $("span").textContent = fill("report_span", {
    date: first.toLocaleDateString(undefined, { year: "numeric", month: "long", day: "numeric" }),
    first: clockTime(report.first_at), last: clockTime(report.last_at), minutes, zone: zone(first),
  });
}

/** Legs with anything to show: windows measured or warnings raised. */
function legsOf(report) {
  return LEGS.filter((leg) => report.windows?.[leg] || report.warnings.some((span) => span.leg === leg));
}

function showTimeline(report) {
  const start = Date.parse(report.first_at);
  const length = Math.max(1000, Date.parse(report.last_at) - start);
  const at = (time) => Math.min(100, Math.max(0, ((Date.parse(time) - start) / length) * 100));
  const rows = legsOf(report).flatMap((leg) => [element("p", "tl-leg", fill(`leg.${leg}`)), ...CUES.map((cue) => {
    const spans = report.warnings.filter((span) => span.leg === leg && span.cue === cue);
    const line = element("div", "tl-row");
    line.dataset.leg = leg;
    line.dataset.cue = cue;
    const track = element("div", "tl-track");
    track.setAttribute("role", "img");
    track.setAttribute("aria-label", fill("report_timeline_label", {
      leg: fill(`leg.${leg}`), cue: fill(`panel.cue.${cue}`), count: spans.length }));
    for (const span of spans) {
      const bar = element("span", "tl-bar");
      const left = at(span.raised_at);
      bar.style.left = `${left}%`;  // CSSOM, which the page's CSP allows (style attributes it would not)
      bar.style.width = `${Math.max(0.8, at(span.cleared_at ?? report.last_at) - left)}%`;
      track.append(bar);
    }
    line.append(element("span", "tl-label", fill(`panel.cue.${cue}`)), track);
    return line;
  })]);
  const axis = element("div", "tl-row tl-axis");
  const ticks = element("div", "tl-ticks");
  ticks.append(...[0, 0.5, 1].map((part) => element("span", "", clockTime(new Date(start + part * length).toISOString()))));
  axis.append(element("span", "tl-label"), ticks);
  $("timeline").replaceChildren(...rows, axis);
}

function showWarnings(report) {
  const spans = report.warnings;
  $("no-warnings").hidden = spans.length > 0;
  $("warnings").hidden = spans.length === 0;
  $("warnings").tBodies[0].replaceChildren(...spans.map((span, index) => {
    const when = fill("report_time_range", { from: clockTime(span.raised_at), to: span.cleared_at ? clockTime(span.cleared_at) : "…" });
    const tr = row(["", when, duration(span.duration_s)]);
    tr.cells[0].append(element("span", "cue", legCue(span.leg, span.cue)), element("span", "message", words(span.message)));
    tr.dataset.leg = span.leg;
    tr.dataset.cue = span.cue;
    return tr;
  }));
  // on paper a long list becomes one line per leg and cue: the page stays one page, the timeline shows each
  const long = spans.length > PRINT_WARNING_ROWS;
  $("warnings").classList.toggle("screen-only", long);
  $("warnings-by-cue").hidden = !long;
  if (long) showWarningsByCue(report);
}

function showWarningsByCue(report) {
  $("warnings-by-cue-caption").textContent = fill("report_by_cue", { count: report.warnings.length });
  const rows = legsOf(report).flatMap((leg) => CUES.map((cue) => {
    const spans = report.warnings.filter((span) => span.leg === leg && span.cue === cue);
    if (!spans.length) return null;
    const total = spans.reduce((sum, span) => sum + (span.duration_s ?? 0), 0);
    const last = spans.at(-1);
    const tr = row([legCue(leg, cue), String(spans.length), duration(total), fill("report_time_range", {
      from: clockTime(spans[0].raised_at), to: last.cleared_at ? clockTime(last.cleared_at) : "…" })]);
    tr.cells[1].className = "num";
    return tr;
  })).filter(Boolean);
  $("warnings-by-cue").tBodies[0].replaceChildren(...rows);
}

function showMinutes(report) {
  // the probe's windows, then (where the call was measured) the call's own: kept apart, never added
  const tables = legsOf(report).flatMap((leg) => {
    const probe = report.minutes_by_level?.[leg];
    const call = report.minutes_by_level_on_call?.[leg];
    const onCall = fill("report_on_call", { leg: fill(`leg.${leg}`), minutes: (report.minutes_on_call?.[leg] ?? 0).toFixed(1) });
    return [...(probe || !call ? [[probe, fill(`leg.${leg}`)]] : []), ...(call ? [[call, onCall]] : [])];  // each leg once at least
  });
  const groups = tables.flatMap(([byCue, heading]) => {
    const head = element("tr", "group");
    const title = element("th", "", heading);
    title.colSpan = 1 + LEVELS.length;
    title.scope = "colgroup";
    head.append(title);
    return [head, ...CUES.map((cue) => {
      const minutes = byCue?.[cue] ?? {};
      const tr = row([fill(`panel.cue.${cue}`), ...LEVELS.map((level) => (minutes[level] ? minutes[level].toFixed(1) : "–"))]);
      LEVELS.forEach((level, index) => {
        const cell = tr.cells[1 + index];
        cell.className = "num";
        if (minutes[level]) cell.dataset.level = level;
      });
      return tr;
    })];
  });
  $("minutes").tBodies[0].replaceChildren(...groups);
}

function showChecks(report) {
  $("no-checks").hidden = report.checks.length > 0;
  $("checks").replaceChildren(...report.checks.map((check, index) => {
    const item = element("li");
    const recommendation = ["video", "audio_only", "phone"].includes(check.recommendation) ? check.recommendation : "unknown";
    const parts = [fill("report_check_line", {
      time: clockTime(check.started_at), client: fill(`report_client.${check.client === "browser" ? "browser" : "cli"}`),
      recommendation: fill(`use.${recommendation}`) })];
    if (check.code) parts.push(fill("report_check_code", { code: check.code }));
    if (check.device_findings.length) {
      parts.push(fill("report_check_devices", { findings: check.device_findings.map((key) => key.replace(/[._]/g, " ")).join(", ") }));
    }
    item.append(element("span", "check-line", parts.join(" · ")));
    if (check.summary) item.append(element("span", "message", check.summary));
    item.dataset.recommendation = recommendation;
    if (index >= PRINT_CHECKS) item.classList.add("screen-only");
    return item;
  }));
}

function show(report) {
  window.netcheckReport = report;
  showSpan(report);
  const coverage = report.coverage ?? {};
  const partial = coverage.hub_events >= coverage.hub_holds_at_most && !coverage.store_events;
  $("partial").hidden = !partial;
  if (partial) $("partial").textContent = fill("report_partial", { count: coverage.hub_holds_at_most });
  const skipped = Number.isInteger(report.skipped_rows) ? report.skipped_rows : 0;
  $("skipped").hidden = skipped === 0;
  $("skipped").dataset.skipped = String(skipped);
  if (skipped) $("skipped").textContent = fill("report_skipped", { count: skipped });
  $("empty").hidden = Boolean(report.first_at) || report.checks.length > 0;
  $("timeline-box").hidden = !report.first_at;
  if (report.first_at) showTimeline(report);
  showWarnings(report);
  showMinutes(report);
  showChecks(report);
  $("generated").textContent = fill("report_generated", {
    time: new Date().toLocaleString(undefined, { dateStyle: "long", timeStyle: "short", hourCycle: "h23" }) });
  $("content").hidden = false;
  $("print").hidden = false;
  document.body.dataset.state = "ready";
}

async function init() {
  applyTexts();
  $("print").addEventListener("click", () => window.print());
  const sessionId = sessionIdFromPath();
  const token = sessionId ? takeToken(sessionId) : null;
  if (!sessionId || !token) {
    $("loading").hidden = true;
    showRefused("refused.no_token");
    return;
  }
  $("heading").textContent = fill("report_heading", { id: sessionId });
  document.title = `${fill("report_title")} · ${sessionId}`;
  let response;
  try {
    response = await fetch(`/v1/sessions/${sessionId}/report`, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
  } catch {
    response = null;
  }
  $("loading").hidden = true;
  if (response === null || response.status >= 500) {
    showRefused("refused.unreachable");
  } else if (!response.ok) {
    showRefused(refusalKey(await refusalOf(response)));
  } else {
    show(await response.json());
  }
}

init();
