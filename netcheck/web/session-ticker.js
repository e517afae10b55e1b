// A clock that keeps time while the tab is in the background (a dedicated worker).
// Browsers slow a hidden page's own timers to once a second, later once a minute; a worker's timers
// run on. The tab asks for named ticks ({name, everyMs}; everyMs 0 stops one) and does the work.

const timers = new Map();

self.onmessage = ({ data }) => {
  const { name, everyMs } = data ?? {};
  if (typeof name !== "string") return;
  clearInterval(timers.get(name));
  timers.delete(name);
  if (Number.isFinite(everyMs) && everyMs > 0) timers.set(name, setInterval(() => self.postMessage(name), everyMs));
};
