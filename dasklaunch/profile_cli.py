"""`dasklaunch profile ...`: memory profiles as distributed.yaml (see dasklaunch.memory)."""

from __future__ import annotations

import typer

profile_app = typer.Typer(no_args_is_help=True, help="Memory profiles: list, show, check, write.")
