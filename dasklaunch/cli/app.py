"""The root typer app: the commands of cluster, batch, logs and profile, joined here.

Domain errors become a one-line message on stderr and their exit code here, in `_Group.invoke`,
and nowhere else. `distributed` is never imported on this path.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from ..errors import DasklaunchError, closed_pipe, print_error
from . import cluster, workers
from .profile import profile_app
from .submit import batch_command
from .tail import logs_command

# Where each command is explained: its page of the docs site, by path in the source tree until
# the site is published (docs/reference/cli.md is made from these same help texts).
DOCS_PAGE = "docs/reference/cli.md"


class _Group(TyperGroup):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _default_metavars(self)
        _docs_epilogs(self, "dasklaunch")

    def main(self, args=None, prog_name=None, standalone_mode=True, **extra):
        """Click's own errors (an unknown option before any command, say) in the one style:
        `dasklaunch: error: ...`, exit 2."""
        if not standalone_mode:
            return super().main(args, prog_name, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
        except SystemExit:
            if type(sys.stdout).__name__ == "PacifyFlushWrapper":
                closed_pipe()  # click's own answer to a closed pipe (--help | head): exit 1
            raise
        except Exception as err:
            if _is_click_exception(err):
                print(f"dasklaunch: error: {err.format_message()}", file=sys.stderr)
                sys.exit(err.exit_code)
            if type(err).__name__ == "Abort":
                print("dasklaunch: aborted", file=sys.stderr)
                sys.exit(1)
            raise
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DasklaunchError as err:
            if _debug(ctx):
                raise
            print_error(err)
            raise typer.Exit(err.exit_code) from None
        except BrokenPipeError:
            closed_pipe()  # before click's own handling, which exits 1
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


def _default_metavars(command) -> None:
    """`--jobs JOBS` rather than typer's `--jobs <int>`, for every option that names none."""
    for param in getattr(command, "params", []):
        if getattr(param, "is_flag", True) or param.metavar is not None:
            continue
        param.metavar = (param.name or "value").upper()
    for sub in getattr(command, "commands", {}).values():
        _default_metavars(sub)


def _docs_epilogs(command, path: str) -> None:
    """Each command's --help ends with the section of the docs that explains it."""
    anchor = path.replace(" ", "-")
    if not getattr(command, "epilog", None):
        command.epilog = (f"Documentation: {DOCS_PAGE}" if path == "dasklaunch"
                          else f"Documentation: {DOCS_PAGE}#{anchor}")
    for name, sub in getattr(command, "commands", {}).items():
        _docs_epilogs(sub, f"{path} {name}")


def _debug(ctx) -> bool:
    return bool((ctx.obj or {}).get("debug"))


def _is_click_exception(err: Exception) -> bool:
    # typer ships its own copy of click, so match by name rather than by class
    return any(cls.__name__ == "ClickException" for cls in type(err).__mro__)


app = typer.Typer(cls=_Group, no_args_is_help=True,
                  pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Launch and manage a Dask cluster inside a Slurm allocation "
                       "(or on this machine when there is none).")



def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        from .. import __version__

        parts = []
        for name in ("dask", "distributed"):
            try:
                parts.append(f"{name} {version(name)}")
            except PackageNotFoundError:
                parts.append(f"{name} not installed")
        print(f"dasklaunch {__version__} ({', '.join(parts)})")
        raise typer.Exit()


@app.callback()
def _root(ctx: typer.Context,
          debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
          show_version: Annotated[bool, typer.Option(
              "--version", callback=_show_version, is_eager=True,
              help="Print dasklaunch's version (and Dask's) and exit.")] = False,
          ) -> None:
    ctx.obj = {"debug": debug}


cluster.register(app)
workers.register(app)
app.command("batch", context_settings={"allow_extra_args": True,
                                       "ignore_unknown_options": True})(batch_command)
app.command("logs")(logs_command)
app.add_typer(profile_app, name="profile")


def main() -> None:
    app(prog_name="dasklaunch")
