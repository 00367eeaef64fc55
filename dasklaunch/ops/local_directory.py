"""Workers' local directory: node-local storage by default, a warning for a shared one.

Dask puts a worker's files in $TMPDIR or /tmp when told nothing, which is node-local almost
everywhere. Where it is not (a site that points TMPDIR at a parallel file system), `up` gives
the workers the first node-local one of $TMPDIR, /tmp and /local/scratch, and says so; a
directory the user chose is kept, with a warning when it is on a shared file system. Judged
from this node's /proc/mounts: `up` runs in the allocation, whose nodes mount alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from ..domain.pool_spec import PoolSpec
from ..domain.scratch import CANDIDATES, dask_default, local_choice, parse_mounts, shared
from ..domain.settings import UpOptions
from ..runtime.report import Reporter


def node_mounts(mounts_text: str | None = None) -> list[tuple[str, str]] | None:
    """(mount point, type) of this node's file systems: `mounts_text` (tests), else
    /proc/mounts; None where there is none to read (not Linux)."""
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/mounts").read_text()
        except OSError:
            return None
    return parse_mounts(mounts_text)


def node_local_directory(opts: UpOptions, specs: tuple[PoolSpec, ...], report: Reporter, *,
                         environ: Mapping[str, str] | None = None,
                         mounts_text: str | None = None,
                         exists: Callable[[str], bool] = os.path.isdir) -> UpOptions:
    env = os.environ if environ is None else environ
    mounts = node_mounts(mounts_text)
    if mounts is None:
        return opts  # not Linux: nothing to judge by
    given = [("--local-directory", opts.local_directory)] if opts.local_directory else []
    given += [(f"--worker-arg {arg}", arg.partition("=")[2]) for arg in opts.worker_args
              if arg.startswith("--local-directory=")]
    given += [(f"pool {s.name}: local-directory", s.local_directory) for s in specs
              if s.local_directory]
    if env.get("DASK_TEMPORARY_DIRECTORY"):
        given.append(("DASK_TEMPORARY_DIRECTORY", env["DASK_TEMPORARY_DIRECTORY"]))
    for what, path in given:
        if kind := shared(path, mounts):
            report.warn(f"{what} {path} is on a shared file system ({kind}): every worker "
                        f"creates and locks its files there and spills there, which is slow "
                        f"with many workers; prefer node-local storage such as /tmp")
    if given or "--local-directory" in opts.worker_args:
        return opts
    default = dask_default(env, exists)
    kind = shared(default, mounts)
    if kind is None:
        return opts
    choice = local_choice(env, mounts, exists)
    if choice is None:
        report.warn(f"workers would keep their files in {default}, on a shared file system "
                    f"({kind}), and none of {', '.join(CANDIDATES)} is node-local here; give "
                    f"--local-directory")
        return opts
    report.info(f"workers keep their files in {choice}: node-local ({default} is on {kind})")
    return replace(opts, local_directory=choice)
