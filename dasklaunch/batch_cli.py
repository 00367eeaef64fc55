"""`dasklaunch batch` and `dasklaunch logs` (filled in by the batch work)."""

from __future__ import annotations

import typer


def batch_command(ctx: typer.Context) -> None:
    """Render an sbatch script that brings the cluster up, runs COMMAND, and brings it down."""
    raise typer.Exit(2)


def logs_command() -> None:
    """Show the scheduler and worker logs of this job."""
    raise typer.Exit(2)
