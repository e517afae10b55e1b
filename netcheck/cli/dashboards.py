"""`netcheck dashboards`: write the Grafana dashboards and provisioning generated from the quality model."""

from pathlib import Path
from typing import Annotated

import typer

dashboards_app = typer.Typer(help="Grafana dashboards, datasource and alert rules for admins.", no_args_is_help=True)


@dashboards_app.command("build")
def build(
    out: Annotated[Path, typer.Option(help="Where to write (the repository's dashboards/ by default).")] = Path("dashboards"),
) -> int:
    """Regenerate the dashboards' JSON and the provisioning files (commit the result)."""
    from netcheck.dashboards import write_tree

    for path in write_tree(out):
        print(path)
    return 0


@dashboards_app.command("export")
def export(directory: Annotated[Path, typer.Argument(help="An empty or new directory.")]) -> int:
    """Write a Grafana install's layout: provisioning/{datasources,dashboards,alerting} and dashboards/netcheck."""
    from netcheck.dashboards import export_tree

    for path in export_tree(directory):
        print(path)
    return 0
