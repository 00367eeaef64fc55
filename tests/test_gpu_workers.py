"""GPU pools beyond pinning: dask-cuda workers (chosen when it is installed, its options passed
through) and the opt-in layout of one Slurm task per GPU worker (pure: plans, command lines,
srun arguments, the local step's share of GPUs per task)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from procs import STANDINS

from dasklaunch.domain import dask_cuda
from dasklaunch.domain.allocation import Allocation
from dasklaunch.domain.dask_argv import GUARD_PRELOAD, WORKER_TLS_ARGS, pool_command
from dasklaunch.domain.pool_spec import parse_pool
from dasklaunch.domain.pools import Layout, plan_pools
from dasklaunch.domain.settings import ProfileSizing, UpOptions
from dasklaunch.domain.step_plan import StepPlan
from dasklaunch.domain.units import check_device_size
from dasklaunch.errors import UsageError
from dasklaunch.launch.local import localstep_argv
from dasklaunch.launch.localstep import task_gpus
from dasklaunch.slurm.commands import srun_argv

GiB = 2**30
PY = "/venv/bin/python"


def alloc(nodes=2, tasks=2, cpus=4, gpus=2):
    return Allocation(job_id="9", nodes=tuple(f"node{i}" for i in range(1, nodes + 1)),
                      tasks_per_node=(tasks,) * nodes, cpus_per_node=(cpus,) * nodes,
                      mem_per_node=8 * GiB, gpus_per_node=(gpus,) * nodes if gpus else ())


def plan(allocation, *specs, installed=False, profile_rmm_pool_size=None, **opts):
    return plan_pools(allocation, UpOptions(**opts), tuple(parse_pool(s) for s in specs),
                      dask_cuda_unusable=None if installed else dask_cuda.unusable(None),
                      sizing=ProfileSizing(rmm_pool_size=profile_rmm_pool_size))


def worker_argv(pool, opts=UpOptions()):
    command = pool_command(opts, pool, "/state/scheduler.json", local=False,
                           tls_args=WORKER_TLS_ARGS, python=PY)
    return command[command.index("--") + 1:], command[:command.index("--")]


# ---------------------------------------------------------------------------------- dask-cuda

def test_gpu_workers_are_dask_cuda_workers_when_it_is_installed():
    (pool,) = plan(alloc(), installed=True)
    argv, launcher = worker_argv(pool)
    assert argv[:5] == [PY, "-m", "dask", "cuda", "worker"]
    # one GPU per process: the node launcher shows each `dask cuda worker` one GPU, so it
    # starts one worker; it has no --nworkers and no --preload-nanny
    assert "--nworkers" not in argv and "--preload-nanny" not in argv
    assert argv[argv.index("--nthreads") + 1] == "2"
    assert argv[argv.index("--memory-limit") + 1] == pool.plan.memory_limit
    assert argv[argv.index("--resources") + 1] == "GPU=1"
    assert argv[argv.index("--preload") + 1] == GUARD_PRELOAD
    assert argv[argv.index("--protocol") + 1] == "tls"
    # `dask cuda worker` is its own program: nothing to prefork
    assert "--prefork" not in launcher and launcher[launcher.index("--gpus-per-worker") + 1] == "1"
    assert "dask-cuda" in Layout((pool,)).describe()


def test_without_dask_cuda_gpu_workers_stay_plain_dask_workers():
    (pool,) = plan(alloc(), installed=False)
    argv, launcher = worker_argv(pool)
    assert argv[1:3] == ["-m", "distributed.cli.dask_worker"] and "--prefork" in launcher
    assert pool.cuda_args is None


@pytest.mark.parametrize("keys, opts, why", [
    ("gpus-per-worker=2", {}, "dask-cuda runs one GPU per worker, not 2"),
    ("worker-arg=--lifetime=1h", {}, "dask cuda worker has no --lifetime (--worker-arg)"),
    ("memory-limit=auto", {}, "dask cuda worker takes --memory-limit auto as the whole "
                              "node's memory"),
    ("nworkers=1", {"nanny": False}, "dask cuda worker always has a nanny (--no-nanny)"),
    ("nthreads=2", {"lifetime": "1h"}, "dask cuda worker has no --lifetime"),
])
def test_auto_keeps_dask_worker_when_the_pool_needs_it(keys, opts, why):
    (pool,) = plan(alloc(), f"gpu:{keys}", installed=True, **opts)
    assert pool.cuda_args is None
    # ... and says why when dask-cuda is asked for
    with pytest.raises(UsageError) as err:
        plan(alloc(), f"gpu:{keys},dask-cuda=yes", installed=True, **opts)
    assert str(err.value) == f"pool gpu: dask-cuda=yes needs dask-cuda, but {why}"


def test_dask_cuda_no_keeps_dask_worker():
    (pool,) = plan(alloc(), "gpu:dask-cuda=no", installed=True)
    assert pool.cuda_args is None


def test_dask_cuda_options_pass_through_per_pool_and_from_up():
    (pool,) = plan(alloc(), "gpu:rmm-pool-size=0.9,device-memory-limit=30GB,cudf-spill=yes",
                   installed=True)
    argv, _ = worker_argv(pool)
    assert argv[-5:] == ["--rmm-pool-size", "0.9", "--device-memory-limit", "30GB",
                         "--enable-cudf-spill"]
    (pool,) = plan(alloc(), installed=True, rmm_pool_size="0.5", cudf_spill=True)
    assert pool.cuda_args == ("--rmm-pool-size", "0.5", "--enable-cudf-spill")
    # a pool's own value wins over up's
    (pool,) = plan(alloc(), "gpu:rmm-pool-size=40GB", installed=True, rmm_pool_size="0.5")
    assert pool.cuda_args == ("--rmm-pool-size", "40GB")


@pytest.mark.parametrize("allocation, specs, opts, installed, message", [
    (alloc(), ["gpu:dask-cuda=yes"], {}, False,
     "pool gpu: dask-cuda=yes needs dask-cuda, but dask-cuda is not installed "
     "(pip install 'dasklaunch[gpu]')"),
    (alloc(gpus=0), ["cpu:dask-cuda=yes"], {}, True,
     "pool cpu: dask-cuda=yes needs dask-cuda, but its workers have no GPU"),
    (alloc(), ["gpu:rmm-pool-size=0.9"], {}, False,
     "pool gpu: rmm-pool-size needs dask-cuda, but dask-cuda is not installed"),
    (alloc(), [], {"rmm_pool_size": "0.9"}, False,
     "--rmm-pool-size: no pool runs dask-cuda (dask-cuda is not installed (pip install "
     "'dasklaunch[gpu]'))"),
    (alloc(gpus=0), [], {"device_memory_limit": "0.8"}, True,
     "--device-memory-limit: no pool runs dask-cuda (no pool has GPU workers)"),
    (alloc(), ["gpu:dask-cuda=no"], {"cudf_spill": True}, True,
     "--enable-cudf-spill: no pool runs dask-cuda (no GPU pool can use it: dask-cuda=no, "
     "several GPUs per worker, or options dask cuda worker lacks)"),
])
def test_dask_cuda_refusals(allocation, specs, opts, installed, message):
    with pytest.raises(UsageError) as err:
        plan(allocation, *specs, installed=installed, **opts)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("text, message", [
    ("gpu:dask-cuda=maybe", "dask-cuda takes auto, yes, no, not 'maybe'"),
    ("gpu:rmm-pool-size=1.5", "rmm-pool-size: 1.5 is 1 byte, not a fraction of the GPU's "
                              "memory in (0, 1] or a size such as 40GB"),
    ("gpu:rmm-pool-size=0", "rmm-pool-size: 0 is not a fraction in (0, 1] or a size"),
    ("gpu:device-memory-limit=lots", "device-memory-limit: 'lots' is neither"),
    ("gpu:gpu-tasks=sometimes", "gpu-tasks takes yes or no"),
])
def test_bad_gpu_pool_keys(text, message):
    with pytest.raises(UsageError) as err:
        parse_pool(text)
    assert message in str(err.value)


def test_device_sizes():
    assert check_device_size("x", "0.9") == "0.9" and check_device_size("x", "40GB") == "40GB"
    # a bare 1 is one byte to dask-cuda; the whole GPU is 1.0
    assert check_device_size("x", "1") == "1.0" and check_device_size("x", "0.90") == "0.9"
    assert check_device_size("x", "default", limit=True) == "default"
    assert check_device_size("x", "0", limit=True) == "0"
    with pytest.raises(UsageError, match="x: 0 is not a fraction"):
        check_device_size("x", "0")


def test_the_nanny_preload_moves_to_dask_config():
    user = ["--nworkers", "1", "--preload", "a", "--preload-nanny", "b", "--name", "n"]
    assert dask_cuda.worker_command(PY, ["--scheduler-file", "f"], user,
                                    ("--rmm-pool-size", "0.5")) == [
        PY, "-m", "dask", "cuda", "worker", "--scheduler-file", "f", "--preload", "a",
        "--name", "n", "--rmm-pool-size", "0.5"]
    env = dask_cuda.worker_env(user)
    assert env == {dask_cuda.NANNY_PRELOAD_VARIABLE: "['b']"}
    # the one-word spelling too
    equals = ["--preload-nanny=b", "--nworkers=2"]
    assert dask_cuda.worker_command(PY, [], equals) == [PY, "-m", "dask", "cuda", "worker"]
    assert dask_cuda.worker_env(equals) == env
    # Dask parses it as the list the nanny's preload is
    code = ("import dask, distributed; "
            "print(dask.config.get('distributed.nanny.preload'))")
    out = subprocess.run([sys.executable, "-c", code], env={**env, "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['b']"


def test_a_profile_pool_size_is_a_default_not_a_demand():
    # a profile with distributed.rmm.pool-size on CPU nodes, or without dask-cuda: no error
    (pool,) = plan(alloc(gpus=0), profile_rmm_pool_size="0.9")
    assert pool.cuda_args is None
    (pool,) = plan(alloc(), installed=True, profile_rmm_pool_size="0.9")
    assert pool.cuda_args == ("--rmm-pool-size", "0.9")
    (pool,) = plan(alloc(), installed=True, profile_rmm_pool_size="0.9", rmm_pool_size="0.5")
    assert pool.cuda_args == ("--rmm-pool-size", "0.5")


def test_a_worker_class_passes_to_dask_cuda_and_the_start_method_too():
    (pool,) = plan(alloc(), "gpu:worker-class=my.Worker", installed=True)
    argv, _ = worker_argv(pool, UpOptions(start_method="forkserver"))
    assert argv[argv.index("--worker-class") + 1] == "my.Worker"
    # dask cuda worker sets its nannies' start method itself (spawn unless told)
    assert argv[argv.index("--multiprocessing-method") + 1] == "forkserver"
    assert "--multiprocessing-method" not in worker_argv(pool)[0]


@pytest.mark.parametrize("version, why", [
    (None, "dask-cuda is not installed (pip install 'dasklaunch[gpu]')"),
    ("26.06.00", "dask-cuda 26.06.00 is older than 26.08, which dasklaunch needs"),
    ("24.12.0", "dask-cuda 24.12.0 is older than 26.08, which dasklaunch needs"),
    ("26.08.00", None), ("26.10.00a12", None), ("27.2.0", None),
])
def test_which_dask_cuda_can_be_used(version, why):
    assert dask_cuda.unusable(version) == why


def test_only_options_dask_cuda_declares_pass():
    assert dask_cuda.undeclared(["--lifetime=1h", "--preload", "x", "--nanny-port", "9000",
                                 "--resources", "A=1", "--nworkers", "2"]) == [
        "--lifetime", "--nanny-port"]


def test_the_node_launcher_refuses_dask_cuda_on_other_gpus(capsys):
    from dasklaunch.launch.node import node_workers

    command = [PY, "-m", "dask", "cuda", "worker", "--scheduler-file", "f"]
    assert node_workers("gpu", 1, command, {"ROCR_VISIBLE_DEVICES": "0,1"}) is None
    assert "are amd's (ROCR_VISIBLE_DEVICES); use dask-cuda=no" in capsys.readouterr().err
    workers = node_workers("gpu", 1, command, {"CUDA_VISIBLE_DEVICES": "0,1",
                                               "SLURMD_NODENAME": "n1"})
    assert [w[1]["CUDA_VISIBLE_DEVICES"] for w in workers] == ["0", "1"]


# ---------------------------------------------------------------------------------- gpu-tasks

def test_a_gpu_task_that_sees_every_gpu_takes_its_own_share():
    """gpu-tasks: Slurm binds each task to its GPUs; where it does not, each task takes the
    SLURM_LOCALID-th share of those it sees, so no two workers share a GPU."""
    from dasklaunch.launch.node import node_workers

    command = [PY, "-m", "distributed.cli.dask_worker"]
    for rank, token in enumerate(["GPU-a", "GPU-b"]):
        env = {"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b", "SLURM_LOCALID": str(rank),
               "SLURMD_NODENAME": "n1"}
        (worker,) = node_workers("gpu", 1, command, env, gpu_tasks=True)
        assert worker[1]["CUDA_VISIBLE_DEVICES"] == token
        assert worker[0][-1] == f"gpu-n1-gpu{token}"
    # bound by Slurm: the one it sees
    (worker,) = node_workers("gpu", 1, command, {"CUDA_VISIBLE_DEVICES": "3",
                                                 "SLURM_LOCALID": "1"}, gpu_tasks=True)
    assert worker[1]["CUDA_VISIBLE_DEVICES"] == "3"


def test_gpu_task_steps_ask_for_their_own_share_of_cpus():
    from dasklaunch.domain.steps import step_cpus

    big = Allocation(job_id="9", nodes=("n1", "n2"), tasks_per_node=(1, 1),
                     cpus_per_node=(64, 64), mem_per_node=64 * GiB, gpus_per_node=(4, 4))
    (pool,) = plan(big, "gpu:gpu-tasks=yes")
    assert pool.plan.nthreads == 16 and step_cpus(pool, big) == 16
    (pool,) = plan(big, "gpu:gpu-tasks=yes,nthreads=32")
    assert step_cpus(pool, big) == 16  # 4 tasks share the node's 64 CPUs
    eight = Allocation(job_id="9", nodes=("n1",), tasks_per_node=(8,), cpus_per_node=(64,),
                       mem_per_node=64 * GiB, gpus_per_node=(4,))
    (pool,) = plan(eight, "gpu:gpu-tasks=yes")
    assert step_cpus(pool, eight) == 16



def test_gpu_tasks_give_each_gpu_worker_its_own_slurm_task():
    (pool,) = plan(alloc(), "gpu:gpu-tasks=yes")
    assert pool.gpu_tasks and pool.plan.placement == "tasks"
    assert pool.plan.ntasks == 4 and pool.plan.nworkers == 1 and pool.expected_workers == 4
    assert pool.plan.nthreads == 2
    step = StepPlan(role="workers", name="w", placement=pool.plan.placement, ntasks=4,
                    nnodes=2, command=("x",), log="l", gpus_per_task=1)
    argv = srun_argv(step, "9")
    assert "--ntasks-per-node=2" in argv and "--gpus-per-task=1" in argv
    assert not any(a.startswith("--gpus-per-node") for a in argv)
    assert localstep_argv(step, python=PY)[:5] == [
        PY, "-m", "dasklaunch.launch.localstep", "--ntasks=4", "--job-name=w"]
    assert "--gpus-per-task=1" in localstep_argv(step, python=PY)


@pytest.mark.parametrize("specs, message", [
    (["cpu:gpu-tasks=yes"], "gpu-tasks=yes needs GPU workers"),
    (["gpu:gpu-tasks=yes,nworkers=2"], "leave out ntasks-per-node and nworkers"),
])
def test_gpu_tasks_refusals(specs, message):
    with pytest.raises(UsageError, match=message):
        plan(alloc(), *specs)


def test_the_local_step_gives_each_task_its_share_of_the_gpus():
    shares = task_gpus({"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b,GPU-c,GPU-d"}, 2, 2)
    assert [s["CUDA_VISIBLE_DEVICES"] for s in shares] == ["GPU-a,GPU-b", "GPU-c,GPU-d"]
    amd = task_gpus({"ROCR_VISIBLE_DEVICES": "0,1"}, 2, 1)
    assert [s["ROCR_VISIBLE_DEVICES"] for s in amd] == ["0", "1"]
    with pytest.raises(SystemExit, match="2 tasks x 1 GPUs, but this step sees 0 GPUs"):
        task_gpus({}, 2, 1)


# ---------------------------------------------------------------------------------- end to end

FAST = ["--local-tasks", "2", "--dashboard-address", ":0", "--timeout", "90"]


def workers_seen(state_dir):
    import json
    import os

    import dasklaunch

    def look():
        import dask

        return (os.environ.get("CUDA_VISIBLE_DEVICES"),
                json.loads(os.environ.get("STANDIN_DASK_CUDA", "null")),
                dask.config.get("distributed.nanny.preload"))

    with dasklaunch.connect(state_dir, timeout="30s") as client:
        seen = client.run(look)
        on_gpu = client.submit(lambda: os.environ["CUDA_VISIBLE_DEVICES"], resources={"GPU": 1},
                               pure=False).result(timeout=30)
        return {w["name"]: (*seen[addr], w["resources"])
                for addr, w in client.scheduler_info()["workers"].items()}, on_gpu


@pytest.mark.lifecycle
def test_dask_cuda_workers_one_per_gpu_with_its_options(local_runner):
    """With dask-cuda installed (a stand-in here: no NVIDIA GPU on the machines that run the
    suite), the GPU pool runs `dask cuda worker`, one per GPU, over TLS, with the options given;
    the CPU pool stays plain `dask worker`s."""
    runner = local_runner
    env = {"CUDA_VISIBLE_DEVICES": "0,1", "PYTHONPATH": STANDINS}
    dry = runner("up", *FAST, "--pool", "cpu:nodes=1,share=yes", "--pool",
                 "gpu:nodes=1,share=yes,device-memory-limit=0.8", "--rmm-pool-size", "0.5",
                 "--dry-run", check=True, extra_env=env)
    assert "-m dask cuda worker" in dry.stdout and "dask-cuda" in dry.stdout
    runner("up", *FAST, "--pool", "cpu:nodes=1,share=yes", "--pool",
           "gpu:nodes=1,share=yes,device-memory-limit=0.8", "--rmm-pool-size", "0.5",
           check=True, extra_env=env)
    workers, on_gpu = workers_seen(runner.state_dir)
    host = next(iter(workers)).split("-")[1]
    options = {"--rmm-pool-size": "0.5", "--device-memory-limit": "0.8"}
    # the nanny's TLS guard: `dask worker` takes it as --preload-nanny, dask-cuda from config
    guard = ["dasklaunch.runtime.tls_guard"]
    assert workers == {
        f"cpu-{host}-0": ("", None, [], {}), f"cpu-{host}-1": ("", None, [], {}),
        f"gpu-{host}-gpu0": ("0", options, guard, {"GPU": 1.0}),
        f"gpu-{host}-gpu1": ("1", options, guard, {"GPU": 1.0})}
    assert on_gpu in ("0", "1")
    runner("restart-workers", "--pool", "gpu", check=True, extra_env=env)
    assert workers_seen(runner.state_dir)[0] == workers
    runner("down", check=True)


@pytest.mark.lifecycle
def test_gpu_tasks_on_the_local_backend(local_runner):
    """gpu-tasks=yes: one task per GPU worker, each task seeing only its own GPU."""
    runner = local_runner
    runner("up", *FAST, "--pool", "gpu:gpu-tasks=yes", check=True,
           extra_env={"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b"})
    workers, _ = workers_seen(runner.state_dir)
    host = next(iter(workers)).split("-")[1]
    assert {n: (v[0], v[3]) for n, v in workers.items()} == {
        f"gpu-{host}-gpuGPU-a": ("GPU-a", {"GPU": 1.0}),
        f"gpu-{host}-gpuGPU-b": ("GPU-b", {"GPU": 1.0})}
    record = runner.record()
    (pool,) = record["pools"]
    assert pool["ntasks"] == 2 and pool["gpus_per_task"] == 1
    runner("down", check=True)


def test_dask_cuda_workers_are_shielded_like_dask_workers():
    """Under a draining launcher `dask cuda worker` too leaves SIGTERM to it (shield.py)."""
    from dasklaunch.launch.shield import shieldable, shielded_argv

    cuda = [sys.executable, "-m", "dask", "cuda", "worker", "--scheduler-file", "f"]
    assert shieldable(cuda) and shielded_argv(cuda) == [
        sys.executable, "-m", "dasklaunch.launch.shield", "--cuda", "--scheduler-file", "f"]
    other = ["/opt/other/python", "-m", "dask", "cuda", "worker"]
    assert not shieldable(other)
