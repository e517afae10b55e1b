"""The real `@jitsi/rtcstats` client from npm, bundled for a browser page as Jitsi Meet bundles it (issue 25,
Must show 3).

`scripts/test` installs the package (and esbuild, which bundles it) into `.npm/` at the repository's root,
an ignored folder that is never committed (NPM_PACKAGES below, pinned). The package is ES-module source
meant to be bundled by the app that uses it (its README: Jitsi Meet does the bundling); esbuild does it here,
unchanged but for one import path that the package's own `exports` map forbids as written (a directory
import that Jitsi Meet's webpack resolves by its own rules).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness.servers import REPO

NPM_PREFIX = REPO / ".npm"
NPM_PACKAGES = ("@jitsi/rtcstats@9.7.1", "esbuild@0.28.2")
"""What scripts/test installs into NPM_PREFIX: the client Jitsi Meet's web client ships, and a bundler."""
ENTRY = """export { default as traceInit } from "@jitsi/rtcstats/trace-ws";
export { default as rtcstatsInit } from "@jitsi/rtcstats/rtcstats";
"""
BROWSER_DETECTION = "@jitsi/js-utils/browser-detection"


def installed() -> bool:
    modules = NPM_PREFIX / "node_modules"
    return (modules / "@jitsi" / "rtcstats").is_dir() and (modules / ".bin" / "esbuild").exists()


def install() -> None:
    """npm install NPM_PACKAGES into NPM_PREFIX, unless they are there."""
    if not installed():
        subprocess.run(["npm", "install", "--prefix", str(NPM_PREFIX), "--no-audit", "--no-fund", "--loglevel=error",
                        *NPM_PACKAGES], check=True, timeout=600)


def rtcstats_bundle(destination: Path) -> Path:
    """One ES module exporting the client's `traceInit` and `rtcstatsInit`, written to `destination`."""
    if not installed():
        raise RuntimeError("the npm client is not installed: python -m tests.harness.rtcstats_client install "
                           "(scripts/test does this)")
    entry = NPM_PREFIX / "netcheck-test-entry.mjs"
    entry.write_text(ENTRY)
    detection = "./node_modules/@jitsi/js-utils/dist/browser-detection/index.js"
    esbuild = NPM_PREFIX / "node_modules" / ".bin" / "esbuild"
    subprocess.run([str(esbuild), str(entry), "--bundle", "--format=esm", "--log-level=warning",
                    f"--alias:{BROWSER_DETECTION}={detection}", f"--outfile={destination}"],
                   cwd=NPM_PREFIX, check=True, timeout=60)
    return destination


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m tests.harness.rtcstats_client install")
    install()
