"""The `netcheck` command: the Typer app, its root and small commands, and `main()` (errors → exit codes).

The command groups live beside this module, one each (`check`, `probe`, `serve`, `agent`, `watch`,
`session`, `dashboards`); this module puts them together in the order `netcheck --help` lists them.
Start-up is part of the interface: `netcheck --help` parses before anything else happens.
- Heavy modules (asyncio, aiohttp, psutil, Rich tables, the library) are imported inside the
  commands that use them; at module level only Typer and the small parsing helpers.
- The command modules do not use `from __future__ import annotations`: with string annotations
  Typer evaluates every option's `Annotated[...]` again at each start, which tripled the time it
  takes to build the commands.
BENCHMARKS.md ("Start-up of `netcheck --help`") has the figures.
"""

import sys
from typing import Annotated

import typer

from netcheck import __version__
from netcheck.cli.agent import agent, store_app
from netcheck.cli.check import check
from netcheck.cli.common import JsonFlag, open_store, print_json, stdout_console
from netcheck.cli.dashboards import dashboards_app
from netcheck.cli.probe import probe_app
from netcheck.cli.serve import serve
from netcheck.cli.session import session_app, token_app
from netcheck.cli.watch import watch
from netcheck.errors import NetcheckError

app = typer.Typer(
    help="Can this connection carry the nonverbal cues of a video therapy session?",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show or create the config file.", no_args_is_help=True)


def _version(value: bool) -> None:
    if value:
        print(f"netcheck {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Can this connection carry the nonverbal cues of a video therapy session?"""


for command in (agent, watch, check, serve):  # the order of `netcheck --help`
    app.command()(command)


@app.command()
def history(
    json_output: JsonFlag = False,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="How many checks, newest first.")] = 20,
) -> int:
    """Past checks from the local store."""
    from netcheck.config import load_config
    from netcheck.cli.render import render_history

    with open_store(load_config()) as store:
        reports = store.list_checks(limit)
    if json_output:
        print_json([{key: report[key] for key in ("check_id", "started_at", "duration_s", "server",
                                                    "recommendation", "level", "summary", "advice")}
                     for report in reports])
    else:
        render_history(reports, stdout_console())
    return 0


@config_app.command("path")
def config_path_command() -> int:
    """Where the config file is (it may not exist yet)."""
    from netcheck.config import config_path
    import os

    print(config_path(os.environ))
    return 0


@config_app.command("show")
def config_show() -> int:
    """The effective config after file, environment and defaults, validated. Secrets are not shown."""
    from netcheck.config import load_config

    config = load_config()
    print_json({
        "config_path": str(config.config_path),
        "config_file_exists": config.config_path.exists(),
        "store_path": str(config.store_path),
        "server": config.server,
        "site": config.site,
        "hmac_key": "set" if config.hmac_key else None,
        "secret": "set" if config.secret else None,
        "check": config.check.__dict__,
        "thresholds": {t.name: {"good": t.good, "fair": t.fair} for t in config.thresholds},
        "agent": config.agent.__dict__,
        "store": config.store.__dict__,
        "serve": config.serve.__dict__,
        "influx": config.influx.describe() if config.influx else None,
    })
    return 0


@config_app.command("init")
def config_init() -> int:
    """Write a commented config file to edit."""
    from netcheck.config import config_path, write_template
    import os

    path = config_path(os.environ)
    write_template(path)
    print(path)
    return 0


for group, name in ((probe_app, "probe"), (config_app, "config"), (store_app, "store"), (token_app, "token"),
                    (session_app, "session"), (dashboards_app, "dashboards")):
    app.add_typer(group, name=name)


def _is_exit(error: Exception) -> bool:
    """Typer's (or click's) Exit; Typer ≥ 0.24 vendors click, so match by shape, not by class."""
    return type(error).__name__ == "Exit" and isinstance(getattr(error, "exit_code", None), int)


def _is_usage_error(error: Exception) -> bool:
    """A click-style usage error (unknown flag, bad value): exit code 2 and a format_message()."""
    return getattr(error, "exit_code", None) == 2 and callable(getattr(error, "format_message", None))


def main(argv: list[str] | None = None) -> None:
    """Entry point: every outcome is an exit code and, on failure, one line on stderr."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv if argv is not None else sys.argv[1:], prog_name="netcheck",
                              standalone_mode=False)
    except NetcheckError as error:
        print(f"netcheck: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("netcheck: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        if _is_exit(error):
            sys.exit(error.exit_code)  # type: ignore[attr-defined]
        if _is_usage_error(error):
            print(f"netcheck: {error.format_message()} (see netcheck --help)", file=sys.stderr)  # type: ignore[attr-defined]
            sys.exit(2)
        print(f"netcheck: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)
