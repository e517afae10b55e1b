// Every English text of the check page, in one table, so that a clinic can translate it.
// A number and its unit are joined by a no-break space (\u00a0): a narrow screen never splits them.
// Keys are stable; {name} is filled in by fill(). Device findings and cue levels come from the
// page's measurements and the server's answer: the keys below explain them, nothing here judges.

export const TEXTS = {
  title: "Connection check",
  intro: "Before your session we check your camera, microphone, speakers and connection. It takes about 30 seconds.",
  start: "Start the check",
  run_again: "Run the check again",
  noscript: "This check needs JavaScript.",
  insecure_context:
    "This page was not opened over a secure connection (https), so your browser does not let it use the camera or microphone. " +
    "Ask your clinic for the https link of this check. The connection test still runs.",

  step_label: "Step {step} of {steps}: {name}",
  step_devices: "camera, microphone and speakers",
  step_call: "a short test call",
  step_voice: "the path your voice takes",
  step_speed: "speed and delay",
  step_verdict: "the result",
  step_done: "Check complete",
  step_error: "the check stopped",

  devices_heading: "Your camera, microphone and speakers",
  camera: "Camera",
  microphone: "Microphone",
  speakers: "Speakers",
  browser: "Browser",
  camera_preview: "Your camera's picture",
  camera_resolution: "Picture size: {width} × {height}",
  mic_level: "Microphone level",
  mic_level_value: "{db}\u00a0dB",
  mic_level_none: "nothing heard at this moment",
  mic_prompt: "Say a few words so we can hear your microphone.",
  chime_question: "We played a short chime. Did you hear it?",
  play_chime: "Play the chime again",
  heard: "I heard it",
  not_heard: "I didn't",
  output_device: "Speakers to use",
  output_device_default: "The computer's default",

  "finding.pending": "Checking…",
  "finding.camera.ok": "Your camera works.",
  "finding.camera.denied":
    "The browser was not allowed to use your camera. {steps}",
  "finding.camera.busy":
    "Your camera is being used by another program (for example another video call). Close that program, then run the check again.",
  "finding.camera.missing": "We found no camera. Plug one in, or check that it is switched on, then run the check again.",
  "finding.camera.black":
    "Your camera's picture is black. Check that nothing covers the lens and that no privacy switch or shutter is closed.",
  "finding.camera.frozen": "Your camera's picture does not move. Unplug the camera and plug it in again, or restart the browser.",
  "finding.camera.error": "The camera could not be started. Restart the browser and run the check again.",
  "finding.camera.not_asked": "The camera was not checked.",
  "finding.microphone.ok": "Your microphone works.",
  "finding.microphone.denied": "The browser was not allowed to use your microphone. {steps}",
  "finding.microphone.busy":
    "Your microphone is being used by another program. Close that program, then run the check again.",
  "finding.microphone.missing": "We found no microphone. Plug in a headset or a microphone, then run the check again.",
  "finding.microphone.silent":
    "We hear nothing from your microphone. Check that it is not muted (a button on the headset or keyboard) and that the right microphone is chosen in your computer's sound settings.",
  "finding.microphone.clipping": "Your microphone is very loud and distorts. Move it a little away from your mouth or lower its volume in your sound settings.",
  "finding.microphone.error": "The microphone could not be started. Restart the browser and run the check again.",
  "finding.microphone.not_asked": "The microphone was not checked.",
  "finding.browser.insecure_context":
    "This page was not opened over https, so the browser kept the camera and microphone closed. Ask your clinic for the https link.",
  "finding.speakers.heard": "Your speakers work.",
  "finding.speakers.not_heard":
    "You did not hear the chime. Check that your speakers or headphones are on, not muted, and chosen in your computer's sound settings.",
  "finding.speakers.not_asked": "Answer when you have listened: did you hear the chime?",

  "permission_steps.chrome":
    "Click the camera icon or the padlock at the left of the address bar, choose Allow for camera and microphone, then run the check again.",
  "permission_steps.edge":
    "Click the padlock at the left of the address bar, open Permissions for this site, allow Camera and Microphone, then run the check again.",
  "permission_steps.firefox":
    "Click the camera icon at the left of the address bar, remove the block on camera and microphone, then run the check again.",
  "permission_steps.safari":
    "In the Safari menu open Settings for this website, set Camera and Microphone to Allow, then run the check again.",
  "permission_steps.other":
    "Open your browser's site settings for this page, allow camera and microphone, then run the check again.",

  call_heading: "A short test call with the clinic",
  call_remote: "The clinic's test picture",
  call_connecting: "Connecting to the clinic's test server…",
  call_measuring: "Measuring the call…",
  call_failed: "The test call could not connect. We measure the rest of your connection.",
  fig_fps: "Picture rate",
  fig_fps_value: "{value}\u00a0frames per second",
  fig_size: "Picture size",
  fig_size_value: "{width} × {height}",
  fig_freezes: "Freezes",
  fig_loss: "Lost packets",
  fig_loss_value: "{video}\u00a0% picture, {audio}\u00a0% sound",
  fig_jitter: "Sound jitter",
  fig_ms_value: "{value}\u00a0ms",
  fig_lipsync: "Lip sync",
  fig_lipsync_value: "sound {value}\u00a0ms {direction} the picture",
  lipsync_ahead: "ahead of",
  lipsync_behind: "behind",
  fig_path: "Route",
  fig_download: "Download",
  fig_upload: "Upload",
  fig_mbps_value: "{value}\u00a0Mbit/s",
  fig_delay: "Delay",
  fig_delay_loaded_value: "{idle}\u00a0ms idle, {down}\u00a0ms while downloading, {up}\u00a0ms while uploading",
  not_measured: "not measured",
  no_frame_callback: "This browser cannot time video frames, so lip sync was not measured.",
  no_audio_worklet: "This browser cannot time sound, so lip sync was not measured.",
  no_sink_choice: "This browser does not let a page choose the speakers; use your computer's sound settings.",

  voice_measuring: "Sending small packets like your voice…",
  speed_download: "Measuring download speed…",
  speed_upload: "Measuring upload speed…",
  verdict_waiting: "Asking the clinic's server for the result…",

  busy: "The clinic's test server is busy, retrying in {seconds}\u00a0s.",
  busy_gave_up: "The clinic's test server is still busy. Please run the check again in a few minutes.",
  error_token: "This check link is not valid any more. Ask your clinic for a new link.",
  error_server: "The clinic's test server could not be reached. Check your internet connection and run the check again. ({detail})",

  "path.host": "direct",
  "path.srflx": "direct, through your router",
  "path.prflx": "direct, through your router",
  "path.relay": "through the clinic's relay server",
  "path.protocol": "{kind} over {protocol}",

  verdict_heading: "Your result",
  "verdict.video": "Your therapist will see your face clearly and hear you well.",
  "verdict.audio_only": "Video may freeze or lag: use audio only, or the phone.",
  "verdict.audio_only.camera": "Your connection can carry video, but your therapist would not see you: fix the camera (see below) and run the check again, or join with audio only.",
  "verdict.phone": "Your connection may break up your voice: use the phone for this session.",
  "verdict.phone.microphone": "Your therapist would not hear you: fix the microphone (see below) and run the check again, or join by phone.",
  "verdict.unknown": "We could not measure enough to say.",
  cues_heading: "What your therapist will notice",
  "cue.facial_expression": "Your face and expressions",
  "cue.vocal_tone": "The tone of your voice",
  "cue.conversational_timing": "Timing of the conversation",
  "cue.lip_sync": "Lips matching the voice",
  "level.good": "good",
  "level.fair": "fair",
  "level.poor": "poor",
  "level.unknown": "not measured",
  advice_heading: "What you can do",
  devices_result_heading: "Your devices",
  code_label: "Your check code",
  code_hint: "Read this code to the clinic if they ask for your check.",
  video_setting: "Suggested video setting: {setting}",
  "video_setting.audio_only": "audio only",
};

/** The text for `key`, with {name} placeholders filled from `values`; the key itself if unknown. */
export function fill(key, values = {}) {
  const text = TEXTS[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

/** Fill every element with a data-text attribute (and data-text-label for aria-label). */
export function applyTexts(root = document) {
  for (const element of root.querySelectorAll("[data-text]")) element.textContent = fill(element.dataset.text);
  for (const element of root.querySelectorAll("[data-text-label]")) {
    element.setAttribute("aria-label", fill(element.dataset.textLabel));
  }
}
