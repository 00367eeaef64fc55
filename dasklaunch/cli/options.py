"""Options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

StateDirOpt = Annotated[Optional[Path], typer.Option(
    "--state-dir", envvar="DASKLAUNCH_STATE_DIR", metavar="DIR",
    help="Per-job state directory [default: $SCRATCH/dasklaunch/JOB or ~/.dasklaunch/JOB].")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
TimeoutOpt = Annotated[Optional[float], typer.Option(
    "--timeout", metavar="SECONDS", help="Seconds to wait for readiness before giving up.")]
