// The check, step by step (≤ 30 s): devices → call → voice path → speed → the server's verdict.
// State for automation (docs/browser-check.md): document.body.dataset.state, window.netcheckResult,
// #verdict[data-recommendation], [data-device][data-finding].

import { applyTexts, fill } from "./texts.js";
import { Api } from "./api.js";
import { Refusal } from "./refusal.js";
import { sleep, takeToken } from "./util.js";
import { checkDevices } from "./devices.js";
import { Call, DEFAULT_FORMAT, parseFormat, showDownstream } from "./call.js";
import { VoiceProbe } from "./voice.js";
import { runSpeed } from "./speed.js";
import { selectedPath } from "./path.js";
import { showVerdict } from "./verdict.js";

const STEPS = ["devices", "call", "voice", "speed", "verdict"];
/** How long the call is watched from its first frame, the voice streams (in the call's last seconds) and
 * each speed phase lasts: the server's plan (/v1/info `browser_check`, the config's `[serve] page_*`), else
 * these, the defaults. The call's figures settle within a few seconds; lip sync counts the markers after
 * the first 2.5 s: 7 s give it four or five. */
const DEFAULT_PLAN = { callWatchMs: 7000, voiceMs: 3200, speedPhaseMs: 2000 };
const PLAN_KEYS = { callWatchMs: "call_watch_s", voiceMs: "voice_s", speedPhaseMs: "speed_phase_s" };
const PLAN_MAX_MS = 60_000;
const MAX_AUDIO_OFFSET_MS = 1000;

const $ = (id) => document.getElementById(id);

/** What this browser lacks for the check, by feature, not by name (docs/browser-page.md "Engines"):
 * `webrtc` (no RTCPeerConnection: no call, no voice path — in-app browsers, WebKitGTK) and
 * `getusermedia` (no camera or microphone access; also every page that is not a secure context). */
function unsupportedFeatures() {
  const missing = [];
  if (typeof window.RTCPeerConnection !== "function") missing.push("webrtc");
  if (typeof navigator.mediaDevices?.getUserMedia !== "function") missing.push("getusermedia");
  return missing;
}

function setState(state) {
  document.body.dataset.state = state;
  const step = STEPS.indexOf(state);
  if (step >= 0) {
    $("progress").value = step;
    $("step-label").textContent = fill("step_label", { step: step + 1, steps: STEPS.length, name: fill(`step_${state}`) });
  } else if (state === "done") {
    $("progress").value = STEPS.length;
    $("step-label").textContent = fill("step_done");
  } else if (state === "error") {
    $("step-label").textContent = fill("step_error");
  }
}

function status(key, values) {
  $("status").textContent = key ? fill(key, values) : "";
}

function showBusy(seconds) {
  const busy = $("busy");
  busy.dataset.busy = String(seconds !== null);
  busy.hidden = seconds === null;
  if (seconds !== null) busy.textContent = fill("busy", { seconds });
}

function settings() {
  const query = new URLSearchParams(location.search);
  const offset = Number(query.get("audio_offset_ms") ?? 0);
  return {
    audioOffsetMs: Number.isFinite(offset) && Math.abs(offset) <= MAX_AUDIO_OFFSET_MS ? offset : 0,
    format: parseFormat(query.get("video")) ?? parseFormat(DEFAULT_FORMAT),
  };
}

/** The server's plan in ms; a length it does not give (an older server) or that is out of reach, the default. */
function planOf(info) {
  const given = info?.browser_check ?? {};
  const plan = { ...DEFAULT_PLAN };
  for (const [name, key] of Object.entries(PLAN_KEYS)) {
    const ms = Number(given[key]) * 1000;
    if (Number.isFinite(ms) && ms >= 500 && ms <= PLAN_MAX_MS) plan[name] = ms;
  }
  return plan;
}

function showPath(path) {
  $("fig-path").textContent = path
    ? fill("path.protocol", { kind: fill(`path.${path.candidate_type}`), protocol: (path.relay_protocol ?? path.protocol).toUpperCase() })
    : fill("not_measured");
}

function showSpeed(throughput) {
  const mbps = (value) => (value === null || value === undefined ? fill("not_measured") : fill("fig_mbps_value", { value }));
  $("fig-download").textContent = mbps(throughput.download_mbps);
  $("fig-upload").textContent = mbps(throughput.upload_mbps);
  const ms = (value) => (value === null || value === undefined ? "–" : value.toFixed(0));
  $("fig-delay").textContent = fill("fig_delay_loaded_value", {
    idle: ms(throughput.idle_rtt_ms), down: ms(throughput.loaded_rtt_down_ms), up: ms(throughput.loaded_rtt_up_ms),
  });
}

function noteMissing(keys) {
  $("not-measured").replaceChildren(...keys.map((key) => {
    const li = document.createElement("li");
    li.textContent = fill(key);
    li.dataset.missing = key;
    return li;
  }));
}

function resetView() {
  for (const id of ["call", "verdict", "error", "sound-off"]) $(id).hidden = true;
  $("verdict").dataset.recommendation = "";
  for (const output of document.querySelectorAll("#call-figures output")) output.textContent = "…";
  noteMissing([]);
  delete window.netcheckResult;
}

/** The call watched for `plan.callWatchMs` from its first frame, the voice stream in its last
 * `plan.voiceMs` (voice and picture together, as in a session); the voice probe when it ran, else null. */
async function watchCallAndVoice(call, plan) {
  const watchEndMs = call.firstFrameMs + plan.callWatchMs;
  const watching = call.watchUntil(watchEndMs, showDownstream);
  await sleep(watchEndMs - plan.voiceMs - performance.now());
  setState("voice");
  const probe = new VoiceProbe(call.channel);
  let voice = null;
  if (await probe.open()) {
    status("voice_measuring");
    await probe.run(plan.voiceMs);
    voice = probe;
  }
  await watching;
  return voice;
}

const SOUND_START_MS = 3000;

/** Start the page's sound: true when it runs. A browser with no sound device may never settle
 * `resume()` (Firefox without one, seen on Linux): after SOUND_START_MS the check goes on without
 * sound — the microphone's level, the chime and lip sync are then named as not measured, never
 * read as silence. The context's state is the one answer (devices.js and call.js read it too). */
async function startSound(context) {
  await Promise.race([context.resume().catch(() => {}), sleep(SOUND_START_MS)]);
  return context.state === "running";
}

let api = null;
let running = false;
let audioContext = null;
let unsupported = [];  // what the browser lacks (unsupportedFeatures), found once at start

async function run() {
  if (running) return;
  running = true;
  resetView();
  $("start").hidden = true;
  $("run-again").disabled = true;
  $("progress-line").hidden = false;
  $("preview").hidden = false;
  const { audioOffsetMs, format } = settings();
  let call = null;
  let stream = null;
  try {
    audioContext?.close().catch(() => {});  // the previous run's (kept for its "play the chime again")
    audioContext = new AudioContext({ latencyHint: "interactive" });
    $("sound-off").hidden = await startSound(audioContext);

    const plan = planOf(await api.info());
    setState("devices");
    $("devices").hidden = false;
    let connecting = null;
    const canCall = !unsupported.includes("webrtc");
    const checked = await checkDevices(audioContext, (opened) => {
      if (!canCall) return;  // said before Start; the speed test still runs
      // the call connects while the devices are watched; its section is shown at once, because a
      // hidden video element gets no frame callbacks
      $("call").hidden = false;
      call = new Call(api, { stream: opened, audioOffsetMs, format, audioContext });
      connecting = call.connect().then((connected) => ({ connected }), (error) => ({ connected: false, error }));
    });
    stream = checked.stream;
    const { devices, speakers } = checked;

    setState("call");
    status("call_connecting");
    const { connected, error: callError } = connecting ? await connecting : { connected: false };
    if (callError instanceof Refusal && (callError.ofToken || callError.kind === "busy")) throw callError;
    let voice = null;
    if (connected) {
      status("call_measuring");
      voice = await watchCallAndVoice(call, plan);
    } else {
      status("call_failed");
      setState("voice");
    }
    const downstream = connected ? await call.downstream() : null;
    if (downstream) {
      // not during the speed test: a saturated link (or CPU) moves both buffers by 100 ms and more
      downstream.av_skew_ms = await call.finishLipSync();
      window.netcheckDiagnostics = call.diagnostics;
    }
    showDownstream(downstream);
    const path = connected ? await selectedPath(call.pc) : null;
    showPath(path);
    noteMissing(call ? call.missing() : []);

    setState("speed");
    const throughput = await runSpeed(api, voice, (phase, figures) => {
      if (phase === "download") status("speed_download");
      if (phase === "upload") {
        status("speed_upload");
        showSpeed({ download_mbps: figures.mbps });
      }
    }, plan.speedPhaseMs);
    showSpeed(throughput);

    setState("verdict");
    status("verdict_waiting");
    devices.speakers = speakers.answer;
    const result = await api.json("/v1/checks", {
      av_session_id: call?.sessionId ?? null,
      audio_offset_ms: audioOffsetMs,
      devices,
      downstream,
      voice: voice ? voice.report() : null,
      throughput,
      path,
      not_measured: connected ? call.missing() : [],
      unsupported,
    });
    window.netcheckResult = result;
    showVerdict(result, devices);
    status(null);
    setState("done");
  } catch (error) {
    const box = $("error");
    if (error instanceof Refusal && error.ofToken) box.textContent = fill("error_token");
    else if (error instanceof Refusal && error.kind === "busy") box.textContent = fill("busy_gave_up");
    else box.textContent = fill("error_server", { detail: error?.message ?? String(error) });
    box.hidden = false;
    status(null);
    setState("error");
  } finally {
    call?.close();
    for (const track of stream?.getTracks() ?? []) track.stop();
    for (const id of ["preview", "remote"]) $(id).hidden = true;  // stopped: a black box would look broken
    $("run-again").disabled = false;
    if (document.body.dataset.state === "error") {
      $("start").textContent = fill("run_again");
      $("start").hidden = false;
    }
    running = false;
  }
}

function init() {
  applyTexts();
  if (!window.isSecureContext) {
    $("insecure").textContent = fill("insecure_context");
    $("insecure").hidden = false;
  }
  const link = location.href;  // as the clinic sent it, token and all: taken out of the address bar below
  unsupported = unsupportedFeatures();
  document.body.dataset.unsupported = unsupported.join(",");
  if (unsupported.includes("webrtc")) {
    $("unsupported-text").textContent = fill("unsupported_webrtc");
    $("unsupported").hidden = false;
    $("copy-link").addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(link);
        $("copy-done").textContent = fill("link_copied");
      } catch {
        $("copy-done").textContent = link;  // no clipboard: the link itself, to select and copy
      }
    });
  }
  api = new Api(takeToken(), showBusy);
  $("start").addEventListener("click", run);
  $("run-again").addEventListener("click", run);
  $("start").disabled = false;
  document.body.dataset.ready = "true";
}

init();
