// What every page shares: rounding for the contract's figures, a percentile, waiting, the loss of two
// getStats readings, and the token from the URL fragment. One copy each; the pages import them from here.

/** `value` to `digits` decimals; null for a missing or non-finite value (JSON has no NaN). */
export function round(value, digits = 1) {
  if (value === null || value === undefined || !Number.isFinite(value)) return null;
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** The `fraction` quantile of `values`, interpolated between the two nearest (numpy's default; 0.5 is
 * the median); null for none. */
export function percentile(values, fraction) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const position = (sorted.length - 1) * fraction;
  const low = Math.floor(position);
  const high = Math.ceil(position);
  return sorted[low] + (sorted[high] - sorted[low]) * (position - low);
}

/** Resolves after `ms` (at once when it is not positive). */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** How much the counter `key` grew from the `start` getStats report to the `end` one (a counter the
 * start lacks counts from 0); null when the end has no such counter. */
export function delta(end, start, key) {
  const a = end?.[key];
  if (typeof a !== "number") return null;
  const b = start?.[key];
  return a - (typeof b === "number" ? b : 0);
}

/** Packets lost of those sent, in % to 0.01, between two inbound-rtp readings: lost / (lost + received).
 * A negative count of lost packets (duplicates, RFC 3550) is none lost; null when nothing is known. */
export function lossPct(end, start) {
  const lost = delta(end, start, "packetsLost");
  const received = delta(end, start, "packetsReceived");
  if (lost === null || received === null || Math.max(0, lost) + received <= 0) return null;
  return round((100 * Math.max(0, lost)) / (Math.max(0, lost) + received), 2);
}

/** The token from the URL fragment (#token=…), which never reaches the server's logs: read it and remove
 * it from the address bar (and so from the history and from a link copied out of it). With `keepFor`
 * (a session id) it is also kept for this tab (sessionStorage), so that a reload still has it; null
 * when the fragment has none and none was kept. It then travels only as `Authorization: Bearer`. */
export function takeToken(keepFor = null) {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromUrl = fragment.get("token");
  if (fragment.has("token")) history.replaceState(null, "", location.pathname + location.search);
  if (keepFor === null) return fromUrl;
  const key = `netcheck.token.${keepFor}`;
  try {
    if (fromUrl) sessionStorage.setItem(key, fromUrl);
    return fromUrl ?? sessionStorage.getItem(key);
  } catch {
    return fromUrl;  // storage refused (a private window's policy): the fragment's token still works
  }
}
