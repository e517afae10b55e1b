"""The `netcheck` command: parse, call the library, render, map `NetcheckError`s to exit codes.

Holds: `app` (the Typer app, `history`, `config`, and `main`), one module per command or group
(`check` with `--local`, `probe`, `serve`, `agent` and `store`, `session`/`token`, `watch`,
`dashboards`), what they share (`common`) and the Rich renderers (`render`, `render_watch`), which
decide nothing.
May import: everything in netcheck; nothing imports it (but `netcheck/__main__.py` and `cli.py`).
Heavy modules (aiohttp, aiortc, influxdb_client) are imported inside the commands that use them:
`netcheck --help` stays near a bare Typer app's start-up.
"""

from netcheck.cli.app import main

__all__ = ["main"]
