// The therapist's pages (panel, report): the session of the path, and a refused token's one sentence.
// The token itself is read by util.js's takeToken (kept for the tab, so that a reload still works).

import { fill } from "./texts.js";

const SESSION_PATH = /^\/session\/([A-Za-z0-9._-]{1,128})(?:\/|$)/;

/** The session id of a `/session/{id}…` path, or null. */
export function sessionIdFromPath(pathname = location.pathname) {
  const match = SESSION_PATH.exec(pathname);
  return match ? match[1] : null;
}

/** The texts key of the one sentence that explains a refusal, from the status and the server's {"error"}. */
export function refusalKey(status, error = "") {
  if (status === 404) return "refused.no_hub";
  if (status === 403) return "refused.client";
  if (error.includes("expired")) return "refused.expired";
  if (error.includes("other session")) return "refused.other_session";
  if (error.includes("missing token")) return "refused.no_token";
  return "refused.invalid";
}

/** The server's `{"error": …}` of a refused answer, or "". */
export async function errorOf(response) {
  try {
    const body = await response.json();
    return typeof body?.error === "string" ? body.error : "";
  } catch {
    return "";
  }
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
