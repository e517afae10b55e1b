// A refused answer of the clinic's server and what it means, read from its `reason` code
// (docs/http-api.md, "Refusals"; netcheck/server/refusal.py REASONS), never from its sentence, which
// may be reworded. The one place the pages classify a refusal; each page words the kinds in texts.js.

/** reason → kind: the distinctions the pages make (a token refused for what, the node's setup, load). */
const KINDS = {
  missing: "missing",
  malformed: "invalid",
  "bad signature": "invalid",
  no_tokens: "invalid",
  expired: "expired",
  "other session": "other_session",
  role: "role",
  hub_disabled: "hub_disabled",
  replaced: "replaced",
  not_found: "not_found",
  busy: "busy",
  rate: "busy",
  unavailable: "unavailable",
  bad_body: "bad_request",
  bad_offer: "bad_request",
  bad_query: "bad_request",
};
/** An answer without a reason (a proxy's, not the node's): its kind by status alone. */
const KIND_OF_STATUS = { 401: "invalid", 403: "role", 429: "busy", 503: "unavailable" };
const TOKEN_KINDS = new Set(["missing", "invalid", "expired", "other_session"]);
/** Kinds that asking again cannot change: the link, its role, the node's setup, a newer tab. */
const FINAL_KINDS = new Set([...TOKEN_KINDS, "role", "hub_disabled", "replaced"]);

export class Refusal extends Error {
  /** @param {number} status  @param {{error?: string, reason?: string}|null} body  the server's JSON */
  constructor(status, body = null) {
    super(typeof body?.error === "string" ? body.error : `HTTP ${status}`);
    this.status = status;
    /** The server's code, or null when the answer had none. */
    this.reason = typeof body?.reason === "string" ? body.reason : null;
    /** One of KINDS' values, or "other". */
    this.kind = (this.reason === null ? KIND_OF_STATUS[status] : KINDS[this.reason]) ?? "other";
  }

  /** The token was refused (401): missing, not one of ours, expired or of another session. */
  get ofToken() {
    return TOKEN_KINDS.has(this.kind);
  }

  /** Asking again cannot help: a page stops and says why. */
  get final() {
    return FINAL_KINDS.has(this.kind);
  }
}

/** The Refusal of an answer that is not ok, with its JSON body when it has one. */
export async function refusalOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  return new Refusal(response.status, body);
}
