// @jitsi/logger is CommonJS whose named exports Node cannot see from an ES module; rtcstats.js only
// logs with it (an unsupported browser), so the replay gives it this console logger.
export function getLogger() { return console; }
