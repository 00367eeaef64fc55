"""`dasklaunch profile ...`: memory profiles as distributed.yaml (see dasklaunch.profiles).

Thin commands: each parses its options and calls one function of dasklaunch.profiles; errors are
UsageErrors, turned into a message and exit code 2 by the root app. None of these commands
imports distributed (its schema is read as a file).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

profile_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                          help="Memory profiles: list, show, check, write.")

NameArg = Annotated[str, typer.Argument(
    metavar="NAME|FILE", help="A profile name (see `dasklaunch profile list`) or a YAML file.")]


def _home(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home):] if text.startswith(home + "/") else text


@profile_app.command("list")
def list_profiles() -> None:
    """List the profiles (shipped, and yours in ~/.config/dasklaunch/profiles/)."""
    from ..profiles.load import list_profiles

    entries = list_profiles()
    width = max((len(entry.name) for entry in entries), default=0)
    for entry in entries:
        text = f"INVALID: {entry.error}" if entry.error else entry.description
        where = "" if entry.origin == "shipped" else f"  [{entry.origin}: {_home(entry.path)}]"
        print(f"{entry.name:<{width}}  {text}{where}")


@profile_app.command()
def show(name: NameArg) -> None:
    """Print the distributed.yaml a profile gives Dask, with the reasons for its numbers."""
    from ..profiles.dask_config import show_profile

    sys.stdout.write(show_profile(name))


@profile_app.command()
def check(
    name: NameArg,
    mem_per_node: Annotated[Optional[str], typer.Option(
        "--mem-per-node", help="Memory per node to check a memory-limit against, e.g. 256GB "
                               "[default: from SLURM_MEM_PER_NODE / SLURM_MEM_PER_CPU].")] = None,
) -> None:
    """Validate a profile: keys against distributed's schema, fractions, threshold order."""
    from ..profiles.schema import check_profile

    print(check_profile(name, mem_per_node=mem_per_node))


@profile_app.command()
def write(
    name: NameArg,
    dest: Annotated[Optional[Path], typer.Option(
        "--dest", help="Config file to merge into [default: ~/.config/dask/distributed.yaml].")
    ] = None,
    assignments: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="KEY=VALUE",
        help="Override one key of the profile, e.g. worker.memory.pause=0.85 (repeatable).")
    ] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace memory settings the file already has.")] = False,
) -> None:
    """Merge a profile into your Dask config, keeping your other keys and a backup."""
    from ..profiles.dask_config import write_profile

    result = write_profile(name, dest=dest, sets=assignments or (), force=force)
    for warning in result.warnings:
        print(f"dasklaunch: warning: {warning}", file=sys.stderr)
    for line in result.diff():
        print(line)
    print(result.summary())
