"""Pure renderers over templates/: text in, text out, checked against expected files."""

from __future__ import annotations

import shlex
from string import Template

from .resources import template


def env_file(*, job_id: str, backend: str, state_dir: str, env_file_path: str,
             scheduler_file: str, scheduler_address: str,
             extra: dict[str, str] | None = None) -> str:
    """The `source`-able env file. Every value is shell-quoted, so it is safe in sh/bash/zsh."""
    extra_lines = "".join(f"export {key}={shlex.quote(value)}\n"
                          for key, value in sorted((extra or {}).items()))
    text = Template(template("env.sh")).substitute(
        job_id=job_id, backend=backend, env_file=shlex.quote(env_file_path),
        scheduler_file=shlex.quote(scheduler_file),
        scheduler_address=shlex.quote(scheduler_address),
        state_dir=shlex.quote(state_dir), extra_exports=extra_lines.rstrip("\n"),
    )
    return text.rstrip("\n") + "\n"


def env_json(*, scheduler_file: str, scheduler_address: str, state_dir: str,
             extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"DASK_SCHEDULER_FILE": scheduler_file, "SCHEDULER_FILE": scheduler_file,
            "DASK_SCHEDULER_ADDRESS": scheduler_address, "DASKLAUNCH_STATE_DIR": state_dir,
            **(extra or {})}


def exports(values: dict[str, str]) -> str:
    """`export NAME=value` lines, shell-quoted, sorted: for eval in sh, bash and zsh."""
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in sorted(values.items()))
