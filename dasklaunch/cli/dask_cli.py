"""`dask launch ...`: dasklaunch under Dask's own CLI (the `dask_cli` entry point).

Dask accepts only real `click.Command` objects there, and typer's commands are not (typer ships
its own copy of click), so this thin click command forwards its arguments to the typer app.
"""

from __future__ import annotations

import click


@click.command("launch", add_help_option=False,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
               help="Launch and manage a Dask cluster in a Slurm allocation (dasklaunch).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def launch(args: tuple[str, ...]) -> None:
    from .app import app

    app(list(args) or ["--help"], prog_name="dask launch")
