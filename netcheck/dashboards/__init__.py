"""Grafana dashboards and provisioning, generated from the quality model so their bands cannot drift.

`netcheck dashboards build` writes them into the repository's `dashboards/` (committed; a test
fails when they differ from what the code generates); `netcheck dashboards export DIR` writes a
ready-to-provision tree for a Grafana install.

Holds: the panels' and queries' builders (`grafana`), the dashboards (`boards`), the datasource and
alert rules (`provisioning`), and here the tree they are written as.
May import: `quality` (its metric rows and bands) and the standard library.
"""

from __future__ import annotations

import json
from pathlib import Path

from netcheck.dashboards.boards import DASHBOARDS
from netcheck.dashboards.provisioning import PROVISIONING_FILES


def generated_files() -> dict[str, str]:
    """Relative path → content of everything `build` writes."""
    files = {f"{stem}.json": json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
             for stem, build in DASHBOARDS.items()}
    files.update({f"provisioning/{path}": text() for path, text in PROVISIONING_FILES.items()})
    return files


def write_tree(directory: Path) -> list[Path]:
    """Write every generated file under `directory` (created if needed); returns the paths written."""
    written = []
    for relative, content in generated_files().items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def export_tree(directory: Path) -> list[Path]:
    """A Grafana install's layout: provisioning/{datasources,dashboards,alerting}/ and dashboards/netcheck/."""
    written = []
    for relative, content in generated_files().items():
        target = directory / relative if relative.startswith("provisioning/") else directory / "dashboards" / "netcheck" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        written.append(target)
    return written
