// Step 1: the client's camera, microphone and speakers.
//
// What a device *is* (no picture, a black or still picture, digital silence, a clipped signal,
// refused, used by another program) is found here, because only the page can see it; how good the
// connection is, is the server's to judge. The constants below say when a picture is black or a
// signal silent: facts about the device, not quality thresholds.

import { fill } from "./texts.js";
import { round, sleep } from "./util.js";

const CAMERA_CONSTRAINTS = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };
const WATCH_MS = 1600;
/** How long the camera picture and the microphone signal are watched. */
const SAMPLE_EVERY_MS = 100;
const THUMB_W = 64;
const THUMB_H = 36;
const BLACK_MAX_LUMA = 24;
/** No pixel of any sampled picture brighter than this (of 255): the lens is covered or the camera is off. */
const SILENT_PEAK_DBFS = -70;
/** No sample louder than this: the microphone delivers (near) digital silence — muted, not merely quiet. */
const CLIP_LEVEL = 0.999;
const CLIP_RUN = 3;
/** Three samples in a row at full scale: the signal is clipped. */
const LEVEL_FLOOR_DB = -120;

export function browserFamily(userAgent = navigator.userAgent) {
  if (/Edg\//.test(userAgent)) return "edge";
  if (/Firefox\//.test(userAgent)) return "firefox";
  if (/Chrom(e|ium)\//.test(userAgent)) return "chrome";
  if (/Safari\//.test(userAgent)) return "safari";
  return "other";
}

function classify(error) {
  switch (error?.name) {
    case "NotAllowedError":
    case "SecurityError":
    case "PermissionDeniedError":
      return "denied";
    case "NotReadableError":
    case "TrackStartError":
    case "AbortError":
      return "busy";
    case "NotFoundError":
    case "DevicesNotFoundError":
    case "OverconstrainedError":
      return "missing";
    default:
      return "error";
  }
}

export function showFinding(device, finding) {
  const element = document.querySelector(`[data-device="${device}"]`);
  element.dataset.finding = finding;
  const steps = fill(`permission_steps.${browserFamily()}`);
  element.textContent = fill(finding === "pending" ? "finding.pending" : `finding.${device}.${finding}`, { steps });
}

async function getMedia(constraints) {
  try {
    return { stream: await navigator.mediaDevices.getUserMedia(constraints), error: null };
  } catch (error) {
    return { stream: null, error };
  }
}

/** Ask for camera and microphone together (one prompt); when that fails, each alone to tell which failed. */
async function openDevices() {
  const both = await getMedia({ video: CAMERA_CONSTRAINTS, audio: true });
  if (both.stream) return { stream: both.stream, camera: "ok", microphone: "ok" };
  const video = await getMedia({ video: CAMERA_CONSTRAINTS });
  const audio = await getMedia({ audio: true });
  const stream = new MediaStream([...(video.stream?.getTracks() ?? []), ...(audio.stream?.getTracks() ?? [])]);
  return {
    stream,
    camera: video.stream ? "ok" : classify(video.error),
    microphone: audio.stream ? "ok" : classify(audio.error),
  };
}

async function watchCamera(track) {
  const preview = document.getElementById("preview");
  preview.srcObject = new MediaStream([track]);
  try {
    await preview.play();
  } catch {
    /* autoplay of a muted preview is allowed; a refusal leaves the picture unmeasured */
  }
  const canvas = document.createElement("canvas");
  canvas.width = THUMB_W;
  canvas.height = THUMB_H;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  let brightest = 0;
  let moved = false;
  let previous = null;
  let samples = 0;
  const until = performance.now() + WATCH_MS;
  while (performance.now() < until) {
    await sleep(SAMPLE_EVERY_MS);
    if (preview.readyState < 2) continue;
    context.drawImage(preview, 0, 0, THUMB_W, THUMB_H);
    const pixels = context.getImageData(0, 0, THUMB_W, THUMB_H).data;
    const luma = new Uint8Array(THUMB_W * THUMB_H);
    for (let i = 0; i < luma.length; i++) {
      luma[i] = (pixels[4 * i] * 299 + pixels[4 * i + 1] * 587 + pixels[4 * i + 2] * 114) / 1000;
      brightest = Math.max(brightest, luma[i]);
    }
    if (previous && luma.some((value, i) => value !== previous[i])) moved = true;
    previous = luma;
    samples++;
  }
  const settings = track.getSettings();
  const width = preview.videoWidth || settings.width || null;
  const height = preview.videoHeight || settings.height || null;
  if (width && height) document.getElementById("camera-size").textContent = fill("camera_resolution", { width, height });
  let finding = "ok";
  if (samples === 0) finding = "error";
  else if (brightest <= BLACK_MAX_LUMA) finding = "black";
  else if (samples > 2 && !moved) finding = "frozen";
  return { finding, width, height };
}

async function watchMicrophone(track, audioContext) {
  const meter = document.getElementById("mic-level");
  const readout = document.getElementById("mic-db");
  const source = audioContext.createMediaStreamSource(new MediaStream([track]));
  const analyser = audioContext.createAnalyser();
  analyser.fftSize = 2048;
  source.connect(analyser);
  const buffer = new Float32Array(analyser.fftSize);
  let loudestDb = -Infinity;
  let peak = 0;
  let clipped = false;
  const until = performance.now() + WATCH_MS;
  while (performance.now() < until) {
    await sleep(40);  // the analyser holds the last 2048 samples (43 ms at 48 kHz)
    analyser.getFloatTimeDomainData(buffer);
    let sum = 0;
    let run = 0;
    for (const sample of buffer) {
      const magnitude = Math.abs(sample);
      sum += sample * sample;
      peak = Math.max(peak, magnitude);
      run = magnitude >= CLIP_LEVEL ? run + 1 : 0;
      if (run >= CLIP_RUN) clipped = true;
    }
    const db = 10 * Math.log10(sum / buffer.length);
    loudestDb = Math.max(loudestDb, db);
    meter.value = Math.max(meter.min, db);
    readout.textContent = db > meter.min ? fill("mic_level_value", { db: db.toFixed(0) }) : fill("mic_level_none");
  }
  source.disconnect();
  const peakDb = 20 * Math.log10(peak);
  let finding = "ok";
  if (!(peakDb > SILENT_PEAK_DBFS)) finding = "silent";
  else if (clipped) finding = "clipping";
  return { finding, levelDb: Number.isFinite(loudestDb) ? Math.max(LEVEL_FLOOR_DB, round(loudestDb, 1)) : LEVEL_FLOOR_DB };
}

/** The chime, the "I heard it" / "I didn't" answer and the choice of output device. */
export class Speakers {
  constructor(audioContext) {
    this.audioContext = audioContext;
    this.answer = "not_asked";
    this.outputChoice = false;
    // assigned, not added: "Run the check again" makes a new Speakers for the same buttons
    document.getElementById("heard").onclick = () => this.setAnswer("heard");
    document.getElementById("not-heard").onclick = () => this.setAnswer("not_heard");
    document.getElementById("play-chime").onclick = () => this.chime();
    for (const id of ["heard", "not-heard"]) document.getElementById(id).setAttribute("aria-pressed", "false");
    showFinding("speakers", "not_asked");
  }

  setAnswer(answer) {
    this.answer = answer;
    document.getElementById("heard").setAttribute("aria-pressed", String(answer === "heard"));
    document.getElementById("not-heard").setAttribute("aria-pressed", String(answer === "not_heard"));
    showFinding("speakers", answer);
  }

  chime() {
    const context = this.audioContext;
    const start = context.currentTime + 0.05;
    for (const [offset, frequency] of [[0, 880], [0.25, 660]]) {
      const oscillator = context.createOscillator();
      const gain = context.createGain();
      oscillator.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, start + offset);
      gain.gain.exponentialRampToValueAtTime(0.3, start + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.6);
      oscillator.connect(gain).connect(context.destination);
      oscillator.start(start + offset);
      oscillator.stop(start + offset + 0.65);
    }
  }

  async offerOutputChoice() {
    const sinkApi = "setSinkId" in HTMLMediaElement.prototype && "setSinkId" in AudioContext.prototype;
    if (!sinkApi) {
      document.getElementById("sink-missing").hidden = false;
      return;
    }
    let outputs = [];
    try {
      outputs = (await navigator.mediaDevices.enumerateDevices()).filter((device) => device.kind === "audiooutput");
    } catch {
      outputs = [];
    }
    if (outputs.length === 0) return;
    const select = document.getElementById("sink");
    select.replaceChildren(new Option(fill("output_device_default"), ""));
    for (const device of outputs) {
      if (device.deviceId === "default" || !device.deviceId) continue;
      select.add(new Option(device.label || device.deviceId.slice(0, 8), device.deviceId));
    }
    select.onchange = async () => {
      try {
        await this.audioContext.setSinkId(select.value);
        this.chime();
      } catch {
        /* the device went away: the default stays */
      }
    };
    document.getElementById("sink-box").hidden = false;
    this.outputChoice = true;
  }
}

/**
 * Run the devices step. Returns the stream to send in the call (whatever tracks could be opened),
 * the contract's `devices` fields, and the Speakers question, which stays open while the check runs.
 * `onOpened(stream)` is called as soon as the devices are open, before they are watched: the call
 * connects meanwhile (the picture and the signal are the device's, which a call beside them does not change).
 */
export async function checkDevices(audioContext, onOpened = () => {}) {
  const devices = {
    secure_context: window.isSecureContext,
    camera: "not_asked", camera_width: null, camera_height: null,
    microphone: "not_asked", microphone_level_db: null,
    speakers: "not_asked", output_device_choice: false,
  };
  const soundRuns = audioContext.state === "running";  // main.js startSound
  const speakers = new Speakers(audioContext);
  document.getElementById("chime-question").hidden = !soundRuns;
  for (const id of ["heard", "not-heard", "play-chime"]) document.getElementById(id).hidden = !soundRuns;
  if (soundRuns) speakers.chime();
  else showFinding("speakers", "no_sound");  // the page's words only: the contract's answer stays not_asked
  if (!navigator.mediaDevices?.getUserMedia) {
    showFinding("camera", "not_asked");
    showFinding("microphone", "not_asked");
    const stream = new MediaStream();
    onOpened(stream);
    return { stream, devices, speakers };
  }
  showFinding("camera", "pending");
  showFinding("microphone", "pending");
  const opened = await openDevices();
  onOpened(opened.stream);
  const [videoTrack] = opened.stream.getVideoTracks();
  const [audioTrack] = opened.stream.getAudioTracks();
  const [camera, microphone] = await Promise.all([
    videoTrack ? watchCamera(videoTrack) : { finding: opened.camera },
    audioTrack && soundRuns ? watchMicrophone(audioTrack, audioContext)
      : { finding: audioTrack ? "not_measured" : opened.microphone },  // a stopped sound engine reads silence
  ]);
  devices.camera = camera.finding;
  devices.camera_width = camera.width ?? null;
  devices.camera_height = camera.height ?? null;
  devices.microphone = microphone.finding;
  devices.microphone_level_db = microphone.levelDb ?? null;
  showFinding("camera", devices.camera);
  showFinding("microphone", devices.microphone);
  if (soundRuns) await speakers.offerOutputChoice();
  return { stream: opened.stream, devices, speakers };
}
