// The session's token for the therapist's pages (panel, report): read from the URL fragment
// (#token=…, never sent to the server), kept for this tab only (sessionStorage, so a reload still
// works), removed from the address bar, and sent only as `Authorization: Bearer`.

import { fill } from "./texts.js";

const SESSION_PATH = /^\/session\/([A-Za-z0-9._-]{1,128})(?:\/|$)/;

/** The session id of a `/session/{id}…` path, or null. */
export function sessionIdFromPath(pathname = location.pathname) {
  const match = SESSION_PATH.exec(pathname);
  return match ? match[1] : null;
}

/** The token from the fragment (then kept for the tab), else the one kept earlier; null when neither. */
export function takeSessionToken(sessionId) {
  const key = `netcheck.token.${sessionId}`;
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  try {
    if (fromUrl) sessionStorage.setItem(key, fromUrl);
    return fromUrl ?? sessionStorage.getItem(key);
  } catch {
    return fromUrl;  // storage refused (a private window's policy): the fragment's token still works
  }
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
