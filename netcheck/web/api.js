// Requests to the clinic's server: the token as `Authorization: Bearer` (never in a URL), and a
// busy server (429 + Retry-After) waited for and retried, with the wait shown to the client.

const BUSY_BUDGET_MS = 90_000;
/** How long in all the page waits for a busy server before it gives up. */
const DEFAULT_RETRY_S = 5;

/** The token travels in the URL fragment (never to the server's logs) and then only in a header: read it
 * and remove it from the address bar (and so from the history and from a link copied out of it). */
export function takeToken() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (token) history.replaceState(null, "", location.pathname + location.search);
  return token;
}

export class ServerError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export class Api {
  /** @param {string|null} token  @param {(seconds: number|null) => void} onBusy  null: no longer busy */
  constructor(token, onBusy) {
    this.token = token;
    this.onBusy = onBusy;
  }

  headers(extra = {}) {
    return this.token ? { ...extra, Authorization: `Bearer ${this.token}` } : { ...extra };
  }

  /** fetch() with the token, retrying while the server answers 429; any other answer is returned. */
  async fetch(path, init = {}) {
    const started = performance.now();
    for (;;) {
      const response = await fetch(path, { ...init, headers: this.headers(init.headers) });
      if (response.status !== 429) {
        this.onBusy(null);
        return response;
      }
      const header = Number.parseFloat(response.headers.get("Retry-After") ?? "");
      const waitS = Number.isFinite(header) && header >= 0 ? Math.ceil(header) : DEFAULT_RETRY_S;
      if (performance.now() - started + waitS * 1000 > BUSY_BUDGET_MS) {
        this.onBusy(null);
        throw new ServerError(429, "busy");
      }
      await countdown(waitS, this.onBusy, init.signal);
    }
  }

  async json(path, body) {
    const response = await this.fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    let answer = null;
    try {
      answer = await response.json();
    } catch {
      answer = null;
    }
    if (!response.ok) throw new ServerError(response.status, answer?.error ?? `HTTP ${response.status}`);
    return answer;
  }
}

async function countdown(seconds, onBusy, signal) {
  for (let left = seconds; left > 0; left--) {
    if (signal?.aborted) throw signal.reason;
    onBusy(left);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
