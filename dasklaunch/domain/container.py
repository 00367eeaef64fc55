"""Pure: the scheduler and workers inside a container image (`up --container IMAGE`): the
options, the runtime that runs the image, and what a job's containers share (ContainerJob).
The command lines are built in domain/container_argv.py, the image's check in
domain/image_check.py.

Four runtimes: Apptainer, Singularity (Apptainer's former name, the same command line), Pyxis
(srun's own --container-* options) and Podman (`podman run`, as podman-hpc runs it). `auto`
takes the first of DETECTION_ORDER that is there:

- Apptainer first: the runtime HPC sites install for users (no root, no daemon; its
  containers are ordinary processes of the step, which Slurm signals and ends like any other),
  and it runs wherever a step or `up` itself runs;
- Singularity: the same program under its former name;
- Pyxis next: Slurm starts and ends its containers itself, but only in srun steps (not
  --scheduler-here, not the local backend), and telling that it is installed takes `srun
  --help`;
- Podman last: its containers live under conmon, outside the task's process tree, which is
  what Slurm signals and kills (see container_argv.podman_argv for how they are named and
  stopped).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import UsageError
from .container_argv import CONTAINER_ENV, Container, srun_options, task_argv

RUNTIMES = ("apptainer", "singularity", "podman", "pyxis")
RUNTIME_CHOICES = ("auto", *RUNTIMES)
DETECTION_ORDER = ("apptainer", "singularity", "pyxis", "podman")
NO_CONTAINER = "none"      # --container none, a pool's container=none: on the host
PYTHON = "python3"         # the image's Python, until its check says where it is


# ------------------------------------------------------------------------------- options

def check_image(option: str, image: str) -> str:
    """An image as a runtime takes it: a file or directory, docker://..., NAME[:TAG]; or none."""
    text = str(image)
    if not text.strip():
        raise UsageError(f"{option} takes an image (a .sif file, a directory, docker://NAME, "
                         f"NAME[:TAG]) or none, not {image!r}")
    if text.startswith("-"):
        raise UsageError(f"{option} {text!r}: an image does not start with '-'")
    if any(ord(char) < 32 for char in text):
        raise UsageError(f"{option} {text!r}: an image holds no control characters")
    return text


def check_runtime(runtime: str) -> str:
    if runtime == "docker":
        raise UsageError("--container-runtime docker: docker's daemon starts containers outside "
                         "the job, where Slurm neither counts nor ends them; use podman")
    if runtime not in RUNTIME_CHOICES:
        raise UsageError(f"--container-runtime takes {', '.join(RUNTIME_CHOICES)}, "
                         f"not {runtime!r}")
    return runtime


def check_container_options(container: str | None, runtime: str, args: Sequence[str]) -> None:
    """The values alone, before anything else is known (a profile may still add an image)."""
    if container is not None:
        check_image("--container", container)
    check_runtime(runtime)
    for arg in args:
        if not str(arg).strip():
            raise UsageError("--container-arg takes a runtime option such as --userns, not ''")


def images_in_use(container: str | None, pool_images: Sequence[str | None]) -> list[str]:
    """The images the job runs, the job's first, each once (a pool's `none` runs on the host)."""
    found = [container] if container not in (None, NO_CONTAINER) else []
    for image in pool_images:
        chosen = image or container
        if chosen not in (None, NO_CONTAINER) and chosen not in found:
            found.append(chosen)
    return found


def check_used(images: Sequence[str], runtime: str, args: Sequence[str]) -> None:
    """A runtime or its options given for a job that runs no image."""
    if images:
        return
    if runtime != "auto":
        raise UsageError(f"--container-runtime {runtime} needs --container IMAGE (or a pool's "
                         f"container=IMAGE)")
    if args:
        raise UsageError("--container-arg needs --container IMAGE (or a pool's container=IMAGE)")


def choose_runtime(requested: str, have: Callable[[str], bool]) -> str:
    """The runtime asked for, when it is there; for auto, the first of DETECTION_ORDER that
    is (`have(name)`: whether it is installed here)."""
    check_runtime(requested)
    if requested != "auto":
        if not have(requested):
            raise UsageError(f"--container-runtime {requested}: {_missing(requested)}")
        return requested
    for name in DETECTION_ORDER:
        if have(name):
            return name
    raise UsageError("--container: no container runtime here (no apptainer, singularity or "
                     "podman on PATH, and srun has no Pyxis --container-image); install one")


def _missing(name: str) -> str:
    if name == "pyxis":
        return "srun has no --container-image here (Pyxis is not installed, or no Slurm job)"
    return f"{name} is not installed here (not on PATH)"


def check_fits(runtime: str, args: Sequence[str], *, backend: str, scheduler_here: bool) -> None:
    """What the chosen runtime cannot do for this job."""
    if runtime != "pyxis":
        return
    if backend != "slurm":
        raise UsageError("--container-runtime pyxis starts containers in srun steps only; the "
                         "local backend has none")
    if scheduler_here:
        raise UsageError("--container-runtime pyxis starts containers in srun steps only; "
                         "--scheduler-here runs the scheduler outside any step")
    for arg in args:
        if not arg.startswith(("--container-", "--no-container-")):
            raise UsageError(f"--container-arg {arg}: with pyxis, these are srun's options of "
                             f"Pyxis (--container-..., --no-container-...)")


# ---------------------------------------------------------------------------- the job's

@dataclass(frozen=True)
class ContainerJob:
    """What a job's containers share, resolved once (ops/container_setup.py): the runtime,
    the job's image (a pool may name its own, or none), the runtime options given, the host
    paths every container binds, its working directory, the vendor of the GPUs that GPU pools
    pass in, and each checked image's Python."""

    runtime: str
    image: str | None
    args: tuple[str, ...] = ()
    binds: tuple[str, ...] = ()
    workdir: str | None = None
    gpu_vendor: str = "nvidia"
    pythons: tuple[tuple[str, str], ...] = ()

    def image_for(self, pool_image: str | None = None) -> str | None:
        image = pool_image or self.image
        return None if image in (None, NO_CONTAINER) else image

    def python(self, image: str) -> str:
        return dict(self.pythons).get(image, PYTHON)

    def container(self, image: str, env: Mapping[str, str], *, gpus: bool,
                  binds: Sequence[str] = ()) -> Container:
        return Container(runtime=self.runtime, image=image, binds=(*self.binds, *binds),
                         env=tuple(sorted(env.items())),
                         gpus=self.gpu_vendor if gpus else None, workdir=self.workdir,
                         args=self.args,
                         watch_dir=(f"{self.workdir}/podman"
                                    if self.runtime == "podman" and self.workdir else None))

    def wrap(self, image: str | None, argv: Sequence[str], env: Mapping[str, str], *,
             gpus: bool, binds: Sequence[str] = ()
             ) -> tuple[list[str], list[str], dict[str, str]]:
        """`argv` in `image` (None: on the host, as given): srun's options (Pyxis's), what each
        task runs, and its variables (CONTAINER_ENV added: they are set inside, over the
        image's values)."""
        if image is None:
            return [], list(argv), dict(env)
        env = {**env, **CONTAINER_ENV}
        container = self.container(image, env, gpus=gpus, binds=binds)
        return srun_options(container), task_argv(container, argv), env

    def to_dict(self) -> dict:
        return {"runtime": self.runtime, "image": self.image, "args": list(self.args),
                "binds": list(self.binds), "workdir": self.workdir,
                "gpu_vendor": self.gpu_vendor, "pythons": dict(self.pythons)}

    @classmethod
    def from_dict(cls, data: Mapping) -> ContainerJob:
        return cls(runtime=data["runtime"], image=data.get("image"),
                   args=tuple(data.get("args") or ()), binds=tuple(data.get("binds") or ()),
                   workdir=data.get("workdir"), gpu_vendor=data.get("gpu_vendor") or "nvidia",
                   pythons=tuple((data.get("pythons") or {}).items()))
