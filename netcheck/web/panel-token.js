// The therapist's pages (panel, report): the session of the path, and a refused token's one sentence.
// The token itself is read by util.js's takeToken (kept for the tab, so that a reload still works).

import { fill } from "./texts.js";

const SESSION_PATH = /^\/session\/([A-Za-z0-9._-]{1,128})(?:\/|$)/;

/** The session id of a `/session/{id}…` path, or null. */
export function sessionIdFromPath(pathname = location.pathname) {
  const match = SESSION_PATH.exec(pathname);
  return match ? match[1] : null;
}

/** The texts key of the one sentence that explains a refusal (refusal.js), by its kind. */
const REFUSED_KEYS = {
  hub_disabled: "refused.no_hub", role: "refused.client", expired: "refused.expired",
  other_session: "refused.other_session", missing: "refused.no_token",
};

/** @param {import("./refusal.js").Refusal} refusal */
export function refusalKey(refusal) {
  return REFUSED_KEYS[refusal.kind] ?? "refused.invalid";
}

/** Show the one sentence of a refusal in `#refused`, and nothing of the session. */
export function showRefused(key) {
  const box = document.getElementById("refused");
  box.textContent = fill(key);
  box.dataset.reason = key.replace("refused.", "");
  box.hidden = false;
  document.getElementById("content").hidden = true;
  document.body.dataset.state = "refused";
}
