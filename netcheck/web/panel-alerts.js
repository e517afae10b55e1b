// A raised warning reaches a therapist whose call window covers the panel: a browser notification
// (the Notification API, asked for only when the therapist presses the button, a user gesture) and,
// when switched on, a soft two-note sound. Both are off until the therapist chooses them; the choice
// of notifications is remembered for this browser.

import { fill } from "./texts.js";
import { activeKey } from "./panel-state.js";

const NOTIFY_PREF = "netcheck.panel.notify";
const CHIME_HZ = [660, 880];
const CHIME_NOTE_S = 0.18;
/** Soft: about −24 dBFS, under a call's voices. */
const CHIME_GAIN = 0.06;

export class Alerts {
  constructor({ button, note, sound }) {
    this.button = button;
    this.note = note;
    this.sound = sound;
    this.notifyOn = false;
    this.audioContext = null;
    /** Open notifications by `activeKey` (`leg/cue`, `leg/cue/call`), closed when their warning clears. */
    this.shown = new Map();
  }

  init() {
    if (!("Notification" in window)) {
      this.button.hidden = true;
      this.say("notify_missing");
    } else {
      this.button.addEventListener("click", () => this.toggleNotifications());
      if (remembered() && Notification.permission === "granted") this.setNotify(true);
    }
    this.sound.addEventListener("change", () => {
      if (this.sound.checked && !this.audioContext) {
        this.audioContext = new AudioContext();  // created in the click: browsers start audio only after a gesture
      }
    });
  }

  async toggleNotifications() {
    if (this.notifyOn) {
      this.setNotify(false);
      return;
    }
    const permission = await Notification.requestPermission();
    this.setNotify(permission === "granted");
    this.say(permission === "denied" ? "notify_denied" : null);
  }

  setNotify(on) {
    this.notifyOn = on;
    this.button.setAttribute("aria-pressed", String(on));
    try {
      localStorage.setItem(NOTIFY_PREF, on ? "on" : "off");
    } catch {
      // storage refused: the choice lasts as long as the page
    }
  }

  say(key) {
    this.note.hidden = key === null;
    this.note.textContent = key ? fill(key) : "";
  }

  /** A warning was raised (and is still active after the batch it came in). */
  raised(event, title) {
    if (this.notifyOn && Notification.permission === "granted") {
      const key = activeKey(event);
      try {
        const notification = new Notification(title, { body: `${event.message}\n${event.advice}`.trim(), tag: key });
        notification.addEventListener("click", () => window.focus());
        this.shown.set(key, notification);
      } catch {
        // a browser that only notifies from a service worker: the panel and its sound still say it
      }
    }
    if (this.sound.checked) this.chime();
  }

  cleared(event) {
    const key = activeKey(event);
    this.shown.get(key)?.close();
    this.shown.delete(key);
  }

  chime() {
    const context = this.audioContext;
    if (!context) return;
    const start = context.currentTime + 0.02;
    CHIME_HZ.forEach((hz, index) => {
      const oscillator = new OscillatorNode(context, { type: "sine", frequency: hz });
      const gain = new GainNode(context, { gain: 0 });
      const at = start + index * CHIME_NOTE_S;
      gain.gain.setValueAtTime(0, at);
      gain.gain.linearRampToValueAtTime(CHIME_GAIN, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + CHIME_NOTE_S);
      oscillator.connect(gain).connect(context.destination);
      oscillator.start(at);
      oscillator.stop(at + CHIME_NOTE_S + 0.02);
    });
  }
}

function remembered() {
  try {
    return localStorage.getItem(NOTIFY_PREF) === "on";
  } catch {
    return false;
  }
}
