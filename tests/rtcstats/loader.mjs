// Lets Node 20 run @jitsi/rtcstats' ES-module sources as published (extensionless relative imports,
// no "type": "module" in its package.json): the files are run unchanged.
export async function resolve(specifier, context, next) {
  if (specifier === "@jitsi/logger") return next(new URL("./logger-shim.mjs", import.meta.url).href, context);
  try {
    return await next(specifier, context);
  } catch (error) {
    if (error.code === "ERR_UNSUPPORTED_DIR_IMPORT") return next(`${specifier}/index.js`, context);
    if (specifier.startsWith(".")) return next(`${specifier}.js`, context);
    throw error;
  }
}

export async function load(url, context, next) {
  if (url.includes("/@jitsi/rtcstats/")) return next(url, { ...context, format: "module" });
  return next(url, context);
}
