"""`up --container`: the runtime chosen and each image checked, once, before anything starts;
what the job's containers share (domain/container.ContainerJob) for plan_steps.

The check runs one short program in each image with the runtime and options the steps will
use (domain/image_check.py builds it and reads its answer): it is the one part here that needs
a real runtime, kept to one command per image. Run on a real Podman and Apptainer
(tests/slurm/test_containers_slurm.py), not on Pyxis (docs/containers.md). A check
that times out is killed by pid, and a Podman container it started lives under conmon, which
that kill does not reach (the check runs without the watcher: it has no state dir yet).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

# the package's own version (its __init__ imports nothing of its own eagerly)
from .. import __version__
from ..domain.container import (
    NO_CONTAINER,
    ContainerJob,
    check_fits,
    check_image,
    choose_runtime,
    images_in_use,
)
from ..domain.container_argv import CONTAINER_ENV, srun_options, task_argv
from ..domain.gpus import visible_gpus
from ..domain.image_check import ImageFacts, check_command, failure, judge, parse_answer, summary
from ..domain.pools import Layout
from ..domain.scratch import dask_default
from ..domain.settings import UpOptions
from ..errors import CommandError, UsageError
from ..runtime import proc
from ..runtime.record import ClusterRecord
from ..runtime.report import Reporter
from ..slurm import queue
from ..slurm.commands import srun_once_argv

# a docker:// image is pulled (and, for apptainer, converted) before its Python runs
CHECK_TIMEOUT = 900.0

Check = Callable[[ContainerJob, str, str], ImageFacts]


def runtime_installed(name: str, backend: str) -> bool:
    """Whether `name` can run containers here: its program on PATH; Pyxis: in srun's options."""
    if name == "pyxis":
        return backend == "slurm" and queue.has_pyxis()
    return shutil.which(name) is not None


def container_job(opts: UpOptions, layout: Layout, *, state_dir: Path | str, job_id: str,
                  backend: str, check: bool, report: Reporter,
                  have: Callable[[str], bool] | None = None, run_check: Check | None = None,
                  environ: Mapping[str, str] | None = None) -> ContainerJob | None:
    """The job's containers (None: it runs none): the runtime, the paths every container binds
    (the state dir, the workers' local directory), the GPUs' vendor, and with `check` each
    image's Python, after its check (refused in one line: no dasklaunch, another version of
    it, no dask; a warning for another distributed). Without `check` (--dry-run) the image's
    `python3` stands for its Python."""
    images = images_in_use(opts.container, [pool.spec.container for pool in layout.pools])
    if not images:
        return None
    runtime = choose_runtime(opts.container_runtime,
                             have or (lambda name: runtime_installed(name, backend)))
    check_fits(runtime, opts.container_args, backend=backend, scheduler_here=opts.scheduler_here)
    env = os.environ if environ is None else environ
    gpus = visible_gpus(env)
    local_directory = opts.local_directory or dask_default(env, os.path.isdir)
    job = ContainerJob(runtime=runtime, image=opts.container, args=tuple(opts.container_args),
                       binds=(str(state_dir), local_directory), workdir=str(state_dir),
                       gpu_vendor=gpus.vendor if gpus else "nvidia")
    if not check:
        return job
    facts = [(run_check or run_image_check)(job, image, job_id) for image in images]
    host_distributed = installed_version("distributed")
    for found in facts:
        for warning in judge(found, dasklaunch=__version__, distributed=host_distributed):
            report.warn(warning)
    report.info(summary(facts, runtime))
    return replace(job, pythons=tuple((found.image, found.python) for found in facts))


def check_argv(job: ContainerJob, image: str, job_id: str) -> list[str]:
    """The check's command line: the image's python3 run as the steps run (Pyxis: in a
    one-task step of the job), but with nothing bound: the job's state dir does not exist
    yet when it runs, and a runtime refuses to bind a missing path."""
    container = replace(job.container(image, CONTAINER_ENV, gpus=False), binds=(), workdir=None,
                        watch_dir=None)
    if job.runtime == "pyxis":
        return srun_once_argv(job_id, srun_options(container), check_command())
    return task_argv(container, check_command())


def run_image_check(job: ContainerJob, image: str, job_id: str) -> ImageFacts:
    """Runs the check in `image` (needs the real runtime) and reads its answer; one line when
    the runtime could not run it (no such image, no python3 in it)."""
    try:
        result = proc.run(check_argv(job, image, job_id), timeout=CHECK_TIMEOUT, check=False)
    except CommandError as err:   # the runtime vanished, or the check outlived CHECK_TIMEOUT
        raise CommandError(f"container image {image}: {err}") from None
    if result.returncode != 0:
        raise UsageError(failure(image, job.runtime, result.returncode,
                                 result.stdout + result.stderr))
    return parse_answer(image, result.stdout)


def installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def worker_job_container(record: ClusterRecord, pool: str | None, container: str | None
                         ) -> tuple[ContainerJob | None, str | None]:
    """The containers of a cluster's worker-only jobs (scale-out) and the image their workers
    run in: `container` (scale-out --container: none, or an image this cluster's `up`
    checked), else the pool's (--pool), else the cluster's; (None, None) without containers."""
    job = ContainerJob.from_dict(record.container) if record.container else None
    if container is not None:
        check_image("--container", container)
        if container == NO_CONTAINER:
            return job, None
        checked = dict(job.pythons) if job else {}
        if container not in checked:
            raise UsageError(f"scale-out --container {container}: not an image this cluster's "
                             f"`up` checked ({', '.join(checked) or 'it runs none'}); give one "
                             f"of those, or none")
        return job, container
    if job is None:
        return None, None
    spec = next((s for s in record.options.pools if s.name == pool), None) if pool else None
    return job, job.image_for(spec.container if spec else None)

