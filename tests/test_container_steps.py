"""Containers in the planned steps: plan_steps wraps the scheduler's and each pool's command
(the image's Python inside, the runtime outside; Pyxis as srun's options), `up --dry-run` shows
those command lines, the runtime is found (or refused) and each image checked before anything
starts. The check itself runs against a stand-in for apptainer on PATH (a shell script that
runs the command it is given with this Python, or fails as apptainer does for a missing image):
no real runtime is needed here."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from dasklaunch import __version__
from dasklaunch.domain import dask_cuda
from dasklaunch.domain.allocation import Allocation
from dasklaunch.domain.container import ContainerJob
from dasklaunch.domain.image_check import ImageFacts
from dasklaunch.domain.pool_spec import parse_pool
from dasklaunch.domain.pools import Layout, plan_pools
from dasklaunch.domain.settings import UpOptions
from dasklaunch.domain.steps import StepContext, plan_steps
from dasklaunch.errors import UsageError
from dasklaunch.ops import container_setup
from dasklaunch.runtime.record import ClusterRecord, StepRun
from dasklaunch.runtime.report import Reporter
from dasklaunch.slurm.commands import has_pyxis, srun_argv, srun_once_argv

STATE = "/scratch/u/dasklaunch/9"
IMAGE_PY = "/opt/env/bin/python"


def alloc(gpus: int = 2) -> Allocation:
    return Allocation(job_id="9", nodes=("node1", "node2"), tasks_per_node=(2, 2),
                      cpus_per_node=(8, 8), mem_per_node=16 * 2**30,
                      gpus_per_node=(gpus, gpus) if gpus else ())


def layout(allocation: Allocation, *specs: str) -> Layout:
    return Layout(plan_pools(allocation, UpOptions(), tuple(map(parse_pool, specs)),
                             dask_cuda_unusable=dask_cuda.unusable(None)))


def job(runtime: str = "apptainer", image: str | None = "dask.sif", **changes) -> ContainerJob:
    values = dict(runtime=runtime, image=image, binds=(STATE, "/tmp"), workdir=STATE,
                  pythons=(("dask.sif", IMAGE_PY),))
    return ContainerJob(**{**values, **changes})


def plan(container: ContainerJob | None, *specs: str, gpus: int = 2):
    allocation = alloc(gpus)
    lay = layout(allocation, *specs)
    context = StepContext(scheduler_file=f"{STATE}/scheduler.json", logs=f"{STATE}/logs",
                          config_dir=f"{STATE}/dask", local=False, scheduler_name="dl-sched-x",
                          pool_names=tuple(f"dl-workers1-{p.name}" for p in lay.pools),
                          tls_env={"scheduler": {"TLS_S": "s"}, "worker": {"TLS_W": "w"}},
                          container=container)
    return plan_steps(UpOptions(), lay, allocation, context)


def test_without_a_container_nothing_changes():
    sched, pools = plan(None, "cpu:nodes=1", "gpu:nodes=1")
    assert sched.command[0] == sys.executable and sched.srun_options == ()
    assert "PYTHONNOUSERSITE" not in sched.env


def test_the_scheduler_and_every_pool_run_the_images_python_inside_the_runtime():
    sched, (cpu, gpu) = plan(job(), "cpu:nodes=1", "gpu:nodes=1,dask-cuda=no")
    for step in (sched, cpu, gpu):
        image_at = step.command.index("dask.sif")
        assert step.command[:2] == ("apptainer", "exec")
        assert step.command[image_at + 1] == IMAGE_PY
        assert step.env["PYTHONNOUSERSITE"] == "1"
        assert f"{STATE}:{STATE}" in step.command and "--pwd" in step.command
    assert "--env" in sched.command and "TLS_S=s" in sched.command
    assert "TLS_W=w" in cpu.command
    # the node launcher and its dask worker: the image's Python, both
    inner = cpu.command[cpu.command.index("dask.sif") + 1:]
    assert inner[:3] == (IMAGE_PY, "-m", "dasklaunch.launch.node")
    assert inner[inner.index("--") + 1] == IMAGE_PY
    # GPUs go in for GPU pools only
    assert "--nv" in gpu.command and "--nv" not in cpu.command and "--nv" not in sched.command


def test_a_pool_in_its_own_image_or_on_the_host():
    _, (own, host, default) = plan(job(pythons=(("dask.sif", IMAGE_PY),
                                                ("rapids.sif", "/rapids/bin/python"))),
                                   "a:nodes=1,container=rapids.sif,gpus-per-worker=0",
                                   "b:nodes=1,container=none,gpus-per-worker=0,share=yes",
                                   "c:nodes=1,share=yes,gpus-per-worker=0")
    assert own.command[own.command.index("rapids.sif") + 1] == "/rapids/bin/python"
    assert host.command[0] == sys.executable and "PYTHONNOUSERSITE" not in host.env
    assert "dask.sif" in default.command


def test_a_pools_local_directory_is_bound_too():
    _, (pool,) = plan(job(runtime="podman"), "a:local-directory=/local/scratch", gpus=0)
    assert "/local/scratch:/local/scratch" in pool.command


def test_pyxis_steps_are_srun_options_before_the_command():
    sched, (gpu,) = plan(job(runtime="pyxis", image="nvcr.io#nvidia/dask:25",
                             pythons=(("nvcr.io#nvidia/dask:25", IMAGE_PY),)), "gpu:dask-cuda=no")
    assert gpu.command[0] == IMAGE_PY
    assert gpu.srun_options[0] == "--container-image=nvcr.io#nvidia/dask:25"
    argv = srun_argv(gpu, "9")
    at = argv.index("--container-image=nvcr.io#nvidia/dask:25")
    assert argv[at:at + len(gpu.srun_options)] == list(gpu.srun_options)
    assert argv[at + len(gpu.srun_options):] == list(gpu.command)
    assert argv.index("--no-kill") < at
    names = next(o for o in gpu.srun_options if o.startswith("--container-env="))
    assert set(names.partition("=")[2].split(",")) == set(gpu.env)
    assert srun_argv(sched, "9")[-len(sched.command) - len(sched.srun_options)] == \
        sched.srun_options[0]


def test_the_plan_and_the_containers_survive_the_record():
    sched, _ = plan(job(runtime="pyxis"), "w")
    run = StepRun.from_dict(json.loads(json.dumps(StepRun(plan=sched).to_dict())))
    assert run.plan == sched
    record = ClusterRecord(job_id="9", backend="slurm", container=job().to_dict())
    again = ClusterRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert ContainerJob.from_dict(again.container) == job()


def test_srun_help_tells_whether_pyxis_is_there():
    listing = ("      --container-image=[USER@][REGISTRY#]IMAGE[:TAG]|PATH\n"
               "                              [pyxis] the image to use for the container\n")
    assert has_pyxis("Usage: srun [OPTIONS(0)...]\n" + listing)
    assert not has_pyxis("Usage: srun [OPTIONS(0)...]\n      --container=ID\n")
    assert srun_once_argv("9", ["--container-image=x"], ["python3", "-c", "1"]) == [
        "srun", "--jobid=9", "--job-name=dl-image-check", "--overlap", "--nodes=1",
        "--ntasks=1", "--kill-on-bad-exit=1", "--container-image=x", "python3", "-c", "1"]


# ------------------------------------------------------------------------------------ up, CLI

@pytest.fixture
def cli(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("DASKLAUNCH_STATE_DIR", str(tmp_path / "state"))
    return cli


def installed(monkeypatch, *names: str) -> None:
    monkeypatch.setattr(container_setup, "runtime_installed",
                        lambda name, backend: name in names)


def commands(result) -> list[list[str]]:
    assert result.exit_code == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines()
            if line and not line.startswith("#")]


def test_dry_run_shows_the_container_command_lines(cli, monkeypatch, tmp_path):
    installed(monkeypatch, "podman", "apptainer")
    result = cli("up", "--dry-run", "--local-tasks", "2", "--container", "/images/my dask.sif",
                 "--container-arg=--userns")
    sched, workers = commands(result)
    assert "# containers: apptainer; the images are not checked" in result.stdout
    assert sched[:2] == ["apptainer", "exec"]
    assert sched[sched.index("/images/my dask.sif") - 1] == "--userns"
    assert sched[sched.index("/images/my dask.sif") + 1:][:3] == [
        "python3", "-m", "distributed.cli.dask_scheduler"]
    state = str(tmp_path / "state")
    assert f"{state}:{state}" in sched
    assert "dasklaunch.launch.localstep" in workers[2]
    assert workers[workers.index("--") + 1:][:2] == ["apptainer", "exec"]
    assert not (tmp_path / "state").exists()


def test_dry_run_with_podman_asked_for(cli, monkeypatch):
    installed(monkeypatch, "podman", "apptainer")
    sched, _ = commands(cli("up", "--dry-run", "--local-tasks", "1", "--container",
                            "docker.io/daskdev/dask:2026.8", "--container-runtime", "podman"))
    assert sched[:6] == ["/bin/sh", "-c", sched[2], "podman", sched[4], "--rm"]
    assert sched[4].endswith("/podman")          # the tasks' lock files, in the state dir
    assert "--init" in sched and sched[sched.index("--network") + 1] == "host"
    image = sched.index("docker.io/daskdev/dask:2026.8")
    assert sched[image + 2:image + 5] == ["-m", "dasklaunch.launch.container_watch", "--"]


def test_dry_run_inside_an_allocation_with_pyxis(cli, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "nid[0001-0002]")
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", "2(x2)")
    monkeypatch.setenv("SLURM_JOB_CPUS_PER_NODE", "8(x2)")
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "16000")
    monkeypatch.setattr("dasklaunch.slurm.queue.shutil.which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr("dasklaunch.slurm.queue.hostnames", lambda nodes: ["nid0001", "nid0002"])
    monkeypatch.setattr("dasklaunch.slurm.queue.version", lambda: (24, 11, "24.11.5"))
    installed(monkeypatch, "pyxis", "podman")   # (shutil.which above would find apptainer)
    sched, workers = commands(cli("up", "--dry-run", "--container", "nvcr.io#nvidia/dask:25"))
    for argv in (sched, workers):
        assert argv[0] == "srun" and "--container-image=nvcr.io#nvidia/dask:25" in argv
        assert "python3" in argv
        assert argv.index("--container-image=nvcr.io#nvidia/dask:25") < argv.index("python3")


@pytest.mark.parametrize("have, args, needle", [
    ((), ["--container", "x.sif"], "no container runtime here"),
    (("apptainer",), ["--container", "x.sif", "--container-runtime", "podman"],
     "--container-runtime podman: podman is not installed here"),
    (("pyxis",), ["--container", "x", "--container-runtime", "pyxis"],
     "the local backend has none"),
    (("apptainer",), ["--container", "x.sif", "--pool", "a:local-directory=/l:1"],
     "apptainer cannot bind a path that holds ':'"),
])
def test_what_cannot_run_is_one_line_before_anything_starts(cli, monkeypatch, tmp_path,
                                                            have, args, needle):
    installed(monkeypatch, *have)
    result = cli("up", "--dry-run", "--local-tasks", "1", *args)
    assert result.exit_code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not (tmp_path / "state").exists()


# ------------------------------------------------------------------------- the image's check

FAKE_APPTAINER = """#!/bin/sh
# Stands in for apptainer: `exec [OPTIONS] IMAGE COMMAND...`; runs COMMAND here, with
# --env's variables, when IMAGE exists, and fails as apptainer does when it does not.
shift   # exec
while [ $# -gt 0 ]; do
  case "$1" in
    --env) export "$2"; shift 2 ;;
    --bind|--pwd) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
image="$1"; shift
if [ ! -e "$image" ]; then
  echo "FATAL:   could not open image $image: failed to retrieve path for $image:" \
       "lstat $image: no such file or directory" >&2
  exit 255
fi
echo "INFO:    a notice on stdout before the program runs"
exec "$@"
"""


@pytest.fixture
def fake_apptainer(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "apptainer"
    script.write_text(FAKE_APPTAINER)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    image = tmp_path / "dask.sif"
    image.write_text("")
    return image


def setup(opts: UpOptions, report: Reporter, backend: str = "local", **kwargs):
    allocation = alloc(0)
    lay = Layout(plan_pools(allocation, opts, opts.pools,
                            dask_cuda_unusable=dask_cuda.unusable(None)))
    return container_setup.container_job(opts, lay, state_dir=STATE, job_id="9",
                                         backend=backend, check=True, report=report, **kwargs)


def test_the_check_runs_in_the_image_and_its_python_is_the_steps(fake_apptainer):
    report = Reporter(quiet=True)
    result = setup(UpOptions(container=str(fake_apptainer)), report)
    assert result.runtime == "apptainer"
    found = dict(result.pythons)[str(fake_apptainer)]
    assert Path(found).name.startswith("python")


def test_an_image_that_does_not_exist_is_one_line(fake_apptainer):
    with pytest.raises(UsageError) as err:
        setup(UpOptions(container="/nowhere/x.sif"), Reporter(quiet=True))
    assert str(err.value).startswith("container image /nowhere/x.sif: apptainer could not run "
                                     "python3 in it (exit 255): FATAL:   could not open image")


def facts(**changes) -> ImageFacts:
    values = dict(image="dask.sif", python=IMAGE_PY, python_version="3.12.4",
                  dasklaunch=__version__, dask="2026.8.0", distributed="2026.8.0")
    return ImageFacts(**{**values, **changes})


@pytest.mark.parametrize("changes, needle", [
    ({"dasklaunch": None}, "container image dask.sif has no dasklaunch"),
    ({"dasklaunch": "0.0.1"}, f"has dasklaunch 0.0.1, this `up` is {__version__}"),
    ({"dask": None}, "container image dask.sif has no dask"),
])
def test_an_image_up_cannot_run_from_is_refused(changes, needle):
    with pytest.raises(UsageError, match=needle):
        setup(UpOptions(container="dask.sif"), Reporter(quiet=True),
              have={"apptainer"}.__contains__, run_check=lambda *a: facts(**changes))


def test_another_distributed_is_said_once_and_up_goes_on(monkeypatch, capsys):
    monkeypatch.setattr(container_setup, "installed_version", lambda name: "2025.1.0")
    result = setup(UpOptions(container="dask.sif"), Reporter(),
                   have={"apptainer"}.__contains__, run_check=lambda *a: facts())
    assert result.pythons == (("dask.sif", IMAGE_PY),)
    err = capsys.readouterr().err
    assert err.count("has distributed 2026.8.0, this `up` runs under 2025.1.0") == 1


def test_each_image_is_checked_once_and_pyxis_checks_in_a_step():
    seen = []

    def run_check(job, image, job_id):
        seen.append(container_setup.check_argv(job, image, job_id))
        return facts(image=image)

    pools = (parse_pool("p:container=b,share=yes"), parse_pool("q:share=yes"))
    setup(UpOptions(container="a", pools=pools), Reporter(quiet=True), backend="slurm",
          have={"pyxis"}.__contains__, run_check=run_check)
    assert [argv[argv.index("--kill-on-bad-exit=1") + 1] for argv in seen] == [
        "--container-image=a", "--container-image=b"]
    assert all(argv[0] == "srun" for argv in seen)


# ------------------------------------------------------------------ podman's containers, killed

def test_a_killed_podman_steps_containers_are_removed_by_name_on_its_nodes(monkeypatch):
    from dasklaunch.launch import slurm as slurm_launch

    _, (pool,) = plan(job(runtime="podman"), "w:nodes=1", gpus=0)
    run = StepRun(plan=replace(pool, ntasks=2), step_id="9.3")   # two tasks on its node
    calls = []
    monkeypatch.setattr(slurm_launch.queue, "cancel", lambda *ids, **kw: calls.append(ids))
    monkeypatch.setattr(slurm_launch.queue, "run_quietly", lambda argv: calls.append(argv))
    slurm_launch.SlurmLauncher("9").kill(run)
    assert calls == [("9.3",), [
        "srun", "--jobid=9", "--job-name=dl-cleanup", "--overlap", "--nodes=1", "--ntasks=1",
        "--ntasks-per-node=1", "--nodelist=node1", "--kill-on-bad-exit=0",
        "podman", "rm", "--force", "--ignore", "dasklaunch-9.3.0", "dasklaunch-9.3.1"]]


def test_other_steps_need_no_removal():
    from dasklaunch.launch.slurm import podman_cleanup_argv

    sched, (pool,) = plan(job(runtime="apptainer"), "w", gpus=0)
    assert podman_cleanup_argv(StepRun(plan=pool), "9.3", "9") is None
    podman_sched, _ = plan(job(runtime="podman"), "w", gpus=0)
    argv = podman_cleanup_argv(StepRun(plan=podman_sched), "9.0", "9", first_node="node1")
    assert argv[-5:] == ["podman", "rm", "--force", "--ignore", "dasklaunch-9.0.0"]
    assert "--nodelist=node1" in argv
