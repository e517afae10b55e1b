// The result: the server's JSON, shown in the client's words. The server has judged; this module
// only picks the texts that go with its answer (recommendation, cue levels, advice, device keys).

import { fill } from "./texts.js";
import { browserFamily } from "./devices.js";

const CUES = ["facial_expression", "vocal_tone", "conversational_timing", "lip_sync"];
const RECOMMENDATIONS = ["video", "audio_only", "phone"];

function item(...children) {
  const li = document.createElement("li");
  li.append(...children);
  return li;
}

function span(className, text, level) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  if (level) element.dataset.level = level;
  return element;
}

/** The answer's device findings that need the client: [{device, finding, key, advice}, …]
 * (docs/browser-check.md); the page's own findings when the answer has none. */
function findings(result, pageDevices) {
  let entries = result.devices;
  if (!Array.isArray(entries)) {
    entries = ["camera", "microphone", "speakers"].map((device) => ({ device, finding: pageDevices?.[device] }));
  }
  return entries.filter((entry) => entry && typeof entry.device === "string" && typeof entry.finding === "string"
    && !["ok", "heard", "not_asked"].includes(entry.finding));
}

export function showVerdict(result, pageDevices) {
  const section = document.getElementById("verdict");
  const recommendation = RECOMMENDATIONS.includes(result.recommendation) ? result.recommendation : "";
  section.dataset.recommendation = recommendation;
  // the connection would carry more than the devices gave (no picture, no sound): say so, not "video may freeze"
  const heldBack = ["camera", "microphone", "browser"].includes(result.held_back_by) ? `.${result.held_back_by}` : "";
  document.getElementById("verdict-sentence").textContent = fill(`verdict.${recommendation || "unknown"}${heldBack}`);
  // the cues are the connection's: with a device holding the answer back they are not what the therapist gets
  const cuesHeading = heldBack === ".browser" ? "cues_heading.held_back.browser" : heldBack ? "cues_heading.held_back" : "cues_heading";
  document.getElementById("cues-h").textContent = fill(cuesHeading);

  const setting = result.video_setting;
  document.getElementById("verdict-setting").textContent = setting
    ? fill("video_setting", { setting: /^audio[ _]only$/.test(setting) ? fill("video_setting.audio_only") : setting })
    : "";

  const cues = document.getElementById("cues");
  cues.replaceChildren(...CUES.map((cue) => {
    const level = result.cues?.[cue]?.level ?? "unknown";
    const li = item(span("cue", fill(`cue.${cue}`)), span("level", fill(`level.${level}`), level));
    li.dataset.cue = cue;
    li.dataset.level = level;
    return li;
  }));

  const devices = findings(result, pageDevices);
  // the server appends the devices' advice to its advice; here they are shown once, in the table's words
  const deviceAdvice = new Set(devices.map((entry) => entry.advice).filter(Boolean));
  const advice = Array.isArray(result.advice)
    ? result.advice.filter((line) => typeof line === "string" && !deviceAdvice.has(line)) : [];
  document.getElementById("advice").replaceChildren(...advice.map((line) => item(line)));
  document.getElementById("advice-h").hidden = advice.length === 0;

  const deviceLines = devices.map(({ device, finding, key }) => {
    const textKey = `finding.${key ?? `${device}.${finding}`}`;
    const li = item(`${fill(device)}: ${fill(textKey, { steps: fill(`permission_steps.${browserFamily()}`) })}`);
    li.dataset.verdictDevice = device;  // [data-device] stays unique to the devices step's findings
    li.dataset.verdictFinding = finding;
    return li;
  });
  document.getElementById("verdict-devices").replaceChildren(...deviceLines);
  document.getElementById("verdict-devices-h").hidden = deviceLines.length === 0;

  document.getElementById("code").textContent = result.code ?? "";
  section.querySelector(".code-box").hidden = !result.code;
  section.hidden = false;
  section.focus();
}
