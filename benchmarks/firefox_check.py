"""The check page in headless Firefox ESR on loopback: click → done, median (min…max) of N runs.

    python benchmarks/firefox_check.py [--runs 5]

A fresh `netcheck serve` per run, as benchmarks/browser_check.py does for Chromium; Firefox shows
real host candidates (as after a user allows the camera: tests/test_browser_firefox.py says why).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness.firefox import body_data, firefox, result, wait_for  # noqa: E402
from tests.harness.servers import start_serve, stop  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    from selenium.webdriver.common.by import By

    times_s, verdicts = [], []
    for _ in range(arguments.runs):
        server = start_serve()
        try:
            with firefox({"media.peerconnection.ice.obfuscate_host_addresses": False}) as driver:
                driver.get(f"{server.http_url}/check")
                wait_for(driver, lambda: body_data(driver, "ready") == "true", 30, "the page ready")
                started_s = time.monotonic()
                driver.find_element(By.ID, "start").click()
                wait_for(driver, lambda: body_data(driver, "state") in ("done", "error"), 60, "done or error")
                times_s.append(time.monotonic() - started_s)
                verdicts.append((result(driver) or {}).get("recommendation"))
        finally:
            stop(server.process)
    print(f"click → done: {statistics.median(times_s):.1f} s ({min(times_s):.1f}…{max(times_s):.1f}), "
          f"{len(times_s)} runs; verdicts {verdicts}")


if __name__ == "__main__":
    main()
