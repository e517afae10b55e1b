// Requests to the clinic's server: the token as `Authorization: Bearer` (never in a URL), and a
// busy server (429 + Retry-After) waited for and retried, with the wait shown to the client. A refused
// answer is thrown as a Refusal (refusal.js), which says what it means by the server's `reason`.

import { Refusal } from "./refusal.js";
import { sleep } from "./util.js";

const BUSY_BUDGET_MS = 90_000;
/** How long in all the page waits for a busy server before it gives up. */
const DEFAULT_RETRY_S = 5;

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
        throw new Refusal(429, { error: "busy", reason: "busy" });
      }
      await countdown(waitS, this.onBusy, init.signal);
    }
  }

  /** GET /v1/info: what the server offers (for a caller who may measure, its TURN server too); null when
   * it does not answer. */
  async info() {
    try {
      const response = await this.fetch("/v1/info", { cache: "no-store" });
      return response.ok ? await response.json() : null;
    } catch {
      return null;
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
    if (!response.ok) throw new Refusal(response.status, answer);
    return answer;
  }
}

async function countdown(seconds, onBusy, signal) {
  for (let left = seconds; left > 0; left--) {
    if (signal?.aborted) throw signal.reason;
    onBusy(left);
    await sleep(1000);
  }
}
