"""The root typer app: the commands of cluster, batch, logs and profile, joined here.

Domain errors become a one-line message on stderr and their exit code here, in `_Group.invoke`,
and nowhere else. `distributed` is never imported on this path.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from ..errors import DasklaunchError, print_error
from . import cluster
from .batch import batch_command
from .logs import logs_command
from .profile import profile_app


class _Group(TyperGroup):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DasklaunchError as err:
            if _debug(ctx):
                raise
            print_error(err)
            raise typer.Exit(err.exit_code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as err:
            if _debug(ctx):
                raise
            if _is_click_exception(err):
                # a bad option value: one line too, with click's own exit code (2)
                print(f"dasklaunch: error: {err.format_message()}", file=sys.stderr)
                raise typer.Exit(err.exit_code) from None
            print(f"dasklaunch: internal error: {type(err).__name__}: {err} "
                  f"(run with --debug for the traceback)", file=sys.stderr)
            raise typer.Exit(1) from None


def _debug(ctx) -> bool:
    return bool((ctx.obj or {}).get("debug"))


def _is_click_exception(err: Exception) -> bool:
    # typer ships its own copy of click, so match by name rather than by class
    return any(cls.__name__ == "ClickException" for cls in type(err).__mro__)


app = typer.Typer(cls=_Group, no_args_is_help=True,
                  pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Launch and manage a Dask cluster inside a Slurm allocation "
                       "(or on this machine when there is none).")



@app.callback()
def _root(ctx: typer.Context,
          debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False
          ) -> None:
    ctx.obj = {"debug": debug}


cluster.register(app)
app.command("batch", context_settings={"allow_extra_args": True,
                                       "ignore_unknown_options": True})(batch_command)
app.command("logs")(logs_command)
app.add_typer(profile_app, name="profile")


def main() -> None:
    app(prog_name="dasklaunch")
