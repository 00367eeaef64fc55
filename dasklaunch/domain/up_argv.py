"""`up`'s options back into `dasklaunch up` arguments: what a job script runs to start the
cluster with exactly the options a Python caller gave."""

from __future__ import annotations

from dataclasses import fields

from ..errors import UsageError
from .pool_spec import pool_text
from .settings import UpOptions

# flags: the field's value -> the option that sets it (None: the default, nothing to give)
_FLAGS = {"per_node": ("--per-node", "--per-task"), "tls": ("--tls", "--no-tls"),
          "nanny": ("--nanny", "--no-nanny"), "scheduler_here": ("--scheduler-here", None),
          "cudf_spill": ("--enable-cudf-spill", None)}
# repeatable options, named for one occurrence
_REPEATED = {"worker_args": "--worker-arg", "scheduler_args": "--scheduler-arg",
             "pools": "--pool", "container_args": "--container-arg"}


def up_argv(opts: UpOptions, given: set[str]) -> list[str]:
    """The `dasklaunch up` options that set the fields named in `given` to their values in
    `opts`, in the order of UpOptions' fields, each as `--opt=value` (so a value that starts
    with `-` stays a value). A field whose value is None is left out; extra_env, which no
    option sets, is refused unless empty."""
    argv: list[str] = []
    for f in fields(UpOptions):
        if f.name not in given:
            continue
        value = getattr(opts, f.name)
        if value is None:
            continue
        if f.name == "extra_env":
            if value:
                raise UsageError("extra_env has no `dasklaunch up` option; set the variables "
                                 "in the job's environment instead")
        elif f.name in _FLAGS:
            flag = _FLAGS[f.name][0 if value else 1]
            argv += [flag] if flag else []
        elif f.name in _REPEATED:
            option = _REPEATED[f.name]
            argv += [f"{option}={pool_text(item) if f.name == 'pools' else item}"
                     for item in value]
        else:
            argv.append(f"--{f.name.replace('_', '-')}={value}")
    return argv
