"""Pure: the command lines of a step's containers, one runtime each (domain/container.py
chooses the runtime).

- Apptainer / Singularity: `apptainer exec [OPTIONS] IMAGE ARGV...`, a plain child of the task.
  The host's environment passes in (no --cleanenv: Slurm's per-task variables, SLURM_LOCALID
  and the GPUs Slurm gave the task, differ from task to task and cannot be written into a
  command line built once for the step); the variables dasklaunch sets are given again with
  --env, which wins over the image's own %environment.
- Pyxis: no wrapper but srun's options for the step (--container-image, --container-mounts,
  --container-env, --container-workdir); srun's environment passes in, and --container-env
  names the variables whose values win over the image's.
- Podman: `podman run --rm --init --network host --ipc host ... IMAGE ARGV...`. The container
  runs under conmon, outside the task's process tree: the task's `podman run` passes SIGTERM
  on (--sig-proxy, its default) to the container's init (--init), which passes it to the node
  launcher; SIGKILL is not passed on, so each container is named from its task's Slurm ids
  (PODMAN_NAME) for `podman kill` and `podman rm --force`. The host's environment does not pass
  in: dasklaunch's variables go as -e NAME=VALUE, the per-task ones by name (-e NAME,
  -e PREFIX*: podman takes their values from the task's environment).

Checked against the runtimes' documented flags, and run under Slurm with a real Podman 4.3 and
Apptainer 1.4.5 (tests/slurm/test_containers_slurm.py; see docs/containers.md):
apptainer-exec(1): --bind src[:dest[:opts]] (comma-separated lists),
--env (a map flag, pflag's stringToString: an item with one '=' as given, else read as one CSV
record), --nv, --rocm, --pwd, --cleanenv, --containall, --no-home, --userns; podman-run(1):
--rm, --init, --name, --network host, --ipc host, -v, -e NAME=VALUE, -e NAME and -e PREFIX*
(values from the host), --workdir, --sig-proxy, --device nvidia.com/gpu=all (CDI);
podman-rm(1) --force --ignore; podman-kill(1) --signal; Pyxis's spank options (args.c):
--container-image, --container-mounts=SRC:DST[:FLAGS][,...] (split on ',', then ':'),
--container-workdir, --container-env=NAME[,NAME...], --[no-]container-mount-home,
--[no-]container-remap-root, --container-writable/--container-readonly,
--[no-]container-entrypoint.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UsageError

# Every container runs the image's packages, not those of ~/.local in a home bound in.
CONTAINER_ENV = {"PYTHONNOUSERSITE": "1"}
# What podman passes in by name from each task's environment (apptainer and Pyxis pass the
# whole environment): Slurm's per-task variables, the GPUs a task was given, Dask's settings.
TASK_VARIABLES = ("SLURM*", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "ROCR_VISIBLE_DEVICES",
                  "HIP_VISIBLE_DEVICES", "ZE_AFFINITY_MASK", "DASK_*", "DASKLAUNCH_*")
# One name per task, from Slurm's ids (unique per job, step and task; a restarted pool is a new
# step), set by the shell that starts `podman run`; outside Slurm, the shell's pid.
PODMAN_NAME = "dasklaunch-${SLURM_JOB_ID:-local}.${SLURM_STEP_ID:-$$}.${SLURM_PROCID:-0}"
# The task's shell: $0 podman, $1 the directory of the tasks' lock files ('' for none), then
# `podman run`'s arguments. With a directory it becomes flock(1) holding DIR/NAME.lock while
# `podman run` runs (-o: the lock's descriptor is not passed on, so only the task holds it):
# the container's watcher (launch/container_watch.py) SIGKILLs the command inside once the
# lock is free, which is when Slurm has killed the task. flock ignores the signals `podman
# run` passes on, so that a SIGTERM drains as without a container.
# A POSIX sh cannot give back a signal that was ignored when it started: env(1) does, where it
# has --default-signal (coreutils 8.31+). Without it podman still drains on SIGTERM (Go's
# runtime catches what its signal proxy asks for, ignored or not); a podman wrapper script
# would not, and its tasks end at Slurm's SIGKILL instead.
_PODMAN_INNER = ('p=$1; n=$2; l=$3; shift 3; set -- run --name "$n" '
                 '-e DASKLAUNCH_OUTSIDE_LOCK="$l" "$@"; '
                 'if env --default-signal=TERM true 2>/dev/null; then '
                 'exec env --default-signal=TERM,INT,HUP "$p" "$@"; fi; exec "$p" "$@"')
PODMAN_START = (f'n="{PODMAN_NAME}"; d=$1; shift; '
                'if [ -z "$d" ]; then exec "$0" run --name "$n" "$@"; fi; '
                'mkdir -p "$d" || exit; trap "" TERM INT HUP; '
                f'exec flock -o "$d/$n.lock" /bin/sh -c \'{_PODMAN_INNER}\' sh "$0" "$n" '
                '"$d/$n.lock" "$@"')
WATCH_MODULE = "dasklaunch.launch.container_watch"
# The characters that end a path in each runtime's bind syntax.
BIND_SEPARATORS = {"apptainer": ":,", "singularity": ":,", "podman": ":", "pyxis": ":,"}
APPTAINER_GPUS = {"nvidia": ("--nv",), "amd": ("--rocm",), "intel": ()}
PODMAN_GPUS = {"nvidia": ("--device", "nvidia.com/gpu=all"),
               "amd": ("--device", "/dev/kfd", "--device", "/dev/dri"),
               "intel": ("--device", "/dev/dri")}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Container:
    """One step's container: the image its tasks run in and what they see of the host."""

    runtime: str                              # RUNTIMES (chosen: never auto)
    image: str
    binds: tuple[str, ...] = ()               # host paths, bound at the same path
    env: tuple[tuple[str, str], ...] = ()     # set inside, over the image's own values
    gpus: str | None = None                   # the vendor whose GPUs it gets; None: none
    workdir: str | None = None
    args: tuple[str, ...] = ()                # --container-arg, before the image
    watch_dir: str | None = None              # podman: the tasks' lock files (see PODMAN_START)


def task_argv(container: Container, argv: Sequence[str]) -> list[str]:
    """What each task runs: `argv` inside the image (Pyxis: `argv` itself, which srun's
    options start in the image)."""
    if container.runtime == "pyxis":
        return list(argv)
    if container.runtime == "podman":
        return podman_argv(container, argv)
    return apptainer_argv(container, argv)


def srun_options(container: Container) -> list[str]:
    """srun's options for the step (Pyxis's); none for the other runtimes."""
    return pyxis_options(container) if container.runtime == "pyxis" else []


def apptainer_argv(container: Container, argv: Sequence[str]) -> list[str]:
    out = [container.runtime, "exec"]
    for path in bind_paths(container):
        out += ["--bind", f"{path}:{path}"]
    for name, value in env_items(container):
        out += ["--env", apptainer_env_item(name, value)]
    out += APPTAINER_GPUS.get(container.gpus or "", ())
    if container.workdir:
        out += ["--pwd", container.workdir]
    return [*out, *container.args, container.image, *argv]


def podman_argv(container: Container, argv: Sequence[str]) -> list[str]:
    """`podman run` as each task runs it: through /bin/sh, which names the container from the
    task's Slurm ids (PODMAN_NAME) and then becomes flock(1) and `podman run` (PODMAN_START);
    the other arguments pass through it untouched ("$@"). With a watch_dir the command runs
    under the watcher, which ends it when the task outside is killed."""
    out = ["/bin/sh", "-c", PODMAN_START, "podman", container.watch_dir or "", "--rm", "--init",
           "--network", "host", "--ipc", "host"]
    for path in bind_paths(container):
        out += ["-v", f"{path}:{path}"]
    for name in TASK_VARIABLES:
        out += ["-e", name]
    for name, value in env_items(container):
        out += ["-e", f"{name}={value}"]
    out += PODMAN_GPUS.get(container.gpus or "", ())
    if container.workdir:
        out += ["--workdir", container.workdir]
    if container.watch_dir and argv:    # argv[0]: the image's Python
        argv = [argv[0], "-m", WATCH_MODULE, "--", *argv]
    return [*out, *container.args, container.image, *argv]


def pyxis_options(container: Container) -> list[str]:
    """The step's srun options: the image, the binds, the working directory, and the names of
    the variables whose values (srun's environment) win over the image's."""
    out = [f"--container-image={container.image}"]
    paths = bind_paths(container)
    if paths:
        out.append("--container-mounts=" + ",".join(f"{path}:{path}" for path in paths))
    if container.workdir:
        out.append(f"--container-workdir={container.workdir}")
    names = [name for name, _ in env_items(container)]
    if names:
        out.append("--container-env=" + ",".join(names))
    return [*out, *container.args]


def bind_paths(container: Container) -> list[str]:
    """The bound paths, each once; refused when the runtime's bind syntax cannot carry one."""
    separators = BIND_SEPARATORS[container.runtime]
    out: list[str] = []
    for path in container.binds:
        if not path.startswith("/"):
            raise UsageError(f"{path!r}: a path bound into the container must be absolute")
        bad = [char for char in separators if char in path]
        if bad or "\0" in path:
            raise UsageError(f"{path}: {container.runtime} cannot bind a path that holds "
                             f"{bad[0] if bad else 'NUL'!r} (its bind syntax separates with "
                             f"{' and '.join(map(repr, separators))}); use another directory")
        path = path.rstrip("/") or "/"
        if path not in out:
            out.append(path)
    return out


def env_items(container: Container) -> list[tuple[str, str]]:
    """The variables set inside, by name; refused when no runtime can pass one."""
    for name, value in container.env:
        if not _NAME.fullmatch(name):
            raise UsageError(f"environment variable {name!r}: a container runtime passes only "
                             f"names of letters, digits and _")
        if "\0" in value:
            raise UsageError(f"environment variable {name}: a value holds no NUL")
    return sorted(dict(container.env).items())


def apptainer_env_item(name: str, value: str) -> str:
    """NAME=VALUE as apptainer's --env reads it back (pflag's stringToString): an item with
    one '=' as it is (apptainer trims double quotes off its ends), else one CSV field, quoted
    when it holds a comma, a double quote or a newline."""
    item = f"{name}={value}"
    if "=" not in value:
        if value.endswith('"'):
            raise UsageError(f"environment variable {name}: apptainer --env drops a closing "
                             f"double quote from a value; set it in the image instead")
        return item
    if "\r" in value:
        raise UsageError(f"environment variable {name}: apptainer --env cannot pass a carriage "
                         f"return in a value that holds '='")
    if any(char in item for char in ',"\n'):
        return '"' + item.replace('"', '""') + '"'
    return item


# ------------------------------------------------------------------ podman's containers

def podman_names(job_id: str, step_id: str, ntasks: int) -> list[str]:
    """The names of a step's containers (PODMAN_NAME with its Slurm ids), one per task: what
    `podman kill` and `podman rm` get on the step's nodes, where each finds its own."""
    return [f"dasklaunch-{job_id}.{step_id}.{task}" for task in range(ntasks)]


def podman_kill_argv(names: Sequence[str], signal: str = "TERM") -> list[str]:
    return ["podman", "kill", f"--signal={signal}", *names]


def podman_remove_argv(names: Sequence[str]) -> list[str]:
    """Removes them, killing those still running; names not on this node are no error."""
    return ["podman", "rm", "--force", "--ignore", *names]
