"""The console script. `dasklaunch env` is answered here, without typer; all else goes to
cli/app.py.

Batch scripts run `eval "$(dasklaunch env)"` in every step, and typer's option handling alone
(it imports pydantic) costs more than the rest of the command. Only the plain spellings of
`env`'s own options take this path; anything else, --help included, falls through to the full
CLI, so behaviour and messages stay the same.
"""

from __future__ import annotations

import os
import sys


def parse_env_args(args: list[str]) -> dict | None:
    """`env`'s options as keyword arguments for show_env, or None to defer to the full CLI."""
    found: dict[str, object] = {"path_only": False, "fmt": "sh",
                                "state_dir": os.environ.get("DASKLAUNCH_STATE_DIR") or None}
    seen: set[str] = set()
    names = {"--state-dir": "state_dir", "--format": "fmt"}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--path" and arg not in seen:
            found["path_only"] = True
        elif arg.partition("=")[0] in names:
            name, eq, value = arg.partition("=")
            if not eq:
                if not rest:
                    return None
                value = rest.pop(0)
            if name in seen or not value or value.startswith("-"):
                return None
            found[names[name]] = value
            arg = name
        else:
            return None
        seen.add(arg)
    if found["fmt"] not in ("sh", "json"):
        return None
    return found


def main() -> None:
    """The command; a reader that closes the pipe early (`dasklaunch status | head -1`) ends
    it quietly, as it ends `ls` or `grep`: no message, exit 141 (128 + SIGPIPE)."""
    try:
        try:
            _run()
        finally:
            # what is still buffered goes out here, where a closed pipe can still be caught
            sys.stdout.flush()
    except BrokenPipeError:
        from ..errors import closed_pipe

        closed_pipe()


def _run() -> None:
    args = sys.argv[1:]
    if args[:1] == ["env"]:
        parsed = parse_env_args(args[1:])
        if parsed is not None:
            from ..errors import DasklaunchError, print_error
            from ..ops.env import show_env

            try:
                show_env(**parsed)
            except DasklaunchError as err:
                print_error(err)
                sys.exit(err.exit_code)
            return
    from .app import main as cli_main

    cli_main()
