"""The reference pages made from the code: the CLI's help (typer's own), the profile keys (the
schema dasklaunch validates profiles with, and distributed's for the Dask keys)."""

from __future__ import annotations

import re
from pathlib import Path


def command_names(help_text: str) -> list[str]:
    """The commands a --help lists under `Commands:`."""
    listing = help_text.split("\nCommands:\n", 1)[-1] if "\nCommands:\n" in help_text else ""
    return re.findall(r"^  ([a-z][a-z-]+)\s", listing, re.M)


def cli_reference() -> str:
    """Every command's --help, as the installed CLI prints it."""
    from typer.testing import CliRunner

    from dasklaunch.cli.app import app

    runner = CliRunner()
    top = runner.invoke(app, ["--help"], prog_name="dasklaunch", terminal_width=100)
    names = command_names(top.stdout)
    parts = ["# Command reference\n", "Made from each command's `--help` when the docs are built."
             "\n", "```text", top.stdout.rstrip(), "```\n"]
    for name in names:
        words = name.split()
        result = runner.invoke(app, [*words, "--help"], prog_name="dasklaunch",
                               terminal_width=100)
        parts += [f"## dasklaunch {name}\n", "```text", result.stdout.rstrip(), "```\n"]
        if name == "profile":
            for sub in command_names(result.stdout):
                sub_help = runner.invoke(app, ["profile", sub, "--help"],
                                         prog_name="dasklaunch", terminal_width=100)
                parts += [f"### dasklaunch profile {sub}\n", "```text",
                          sub_help.stdout.rstrip(), "```\n"]
    return "\n".join(parts) + "\n"


def profile_reference() -> str:
    """The `dasklaunch:` hints and the Dask memory keys a profile sets, with the profiles that
    ship."""
    import yaml

    from dasklaunch.profiles.hints import HINTS
    from dasklaunch.profiles.load import list_profiles
    from dasklaunch.profiles.schema import THRESHOLDS, _distributed_dir

    lines = ["# Profile reference\n",
             "Made from the schema that validates profiles when the docs are built.\n",
             "## `dasklaunch:` keys\n", "| key | what it says |", "|---|---|"]
    lines += [f"| `{key}` | {text} |" for key, text in HINTS.items()]
    schema = yaml.safe_load((_distributed_dir() / "distributed-schema.yaml").read_text())
    memory = (schema["properties"]["distributed"]["properties"]["worker"]["properties"]
              ["memory"]["properties"])
    lines += ["", "## `distributed.worker.memory` (distributed's schema)\n",
              f"The thresholds must rise in this order: {', '.join(THRESHOLDS)}.\n",
              "| key | distributed's description |", "|---|---|"]
    for key, spec in memory.items():
        text = " ".join(str(spec.get("description", "")).split()).replace("|", "\\|")
        lines.append(f"| `{key}` | {text} |")
    lines += ["", "## Profiles that ship\n", "| name | what it is for |", "|---|---|"]
    for entry in list_profiles():
        if entry.origin == "shipped":   # not the builder's own profiles
            lines.append(f"| `{entry.name}` | {entry.description} |")
    return "\n".join(lines) + "\n"


def write_all(out: Path) -> None:
    out.mkdir(exist_ok=True)
    (out / "cli.md").write_text(cli_reference())
    (out / "profiles.md").write_text(profile_reference())
