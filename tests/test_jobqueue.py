"""dask-jobqueue's jobqueue.slurm settings as defaults for `up`, with their provenance."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from procs import FAKE_BIN

from dasklaunch.domain.settings import UpOptions
from dasklaunch.profiles.jobqueue import apply_jobqueue_defaults

SECTION = {"interface": "ib0", "cores": 8, "processes": 2, "memory": "16GB",
           "local-directory": "/tmp/x", "worker-extra-args": ["--lifetime", "1h"]}


def test_unset_options_come_from_jobqueue_yaml():
    opts, origin = apply_jobqueue_defaults(UpOptions(), set(), SECTION)
    assert (opts.interface, opts.nworkers, opts.nthreads) == ("ib0", 2, 4)
    # as in dask-jobqueue, processes are per job, and a node plays the job's part
    assert opts.per_node is True
    assert opts.memory_limit == str(8 * 10**9)
    assert opts.local_directory == "/tmp/x" and opts.worker_args == ("--lifetime", "1h")
    assert origin["interface"] == "jobqueue.yaml: interface=ib0"
    assert origin["memory_limit"] == "jobqueue.yaml: memory=16GB / processes=2"


def test_the_command_line_wins():
    opts, origin = apply_jobqueue_defaults(UpOptions(interface="lab0", nworkers=1),
                                           {"interface", "nworkers"}, SECTION)
    assert opts.interface == "lab0" and opts.nworkers == 1
    assert origin["interface"] == origin["nworkers"] == "command line"
    assert origin["nthreads"] == "jobqueue.yaml: cores=8 / processes=2"
    # with --nworkers given, processes no longer decide the layout
    assert opts.per_node is None and origin["per_node"] == "default"


def test_nothing_set_means_defaults():
    opts, origin = apply_jobqueue_defaults(UpOptions(), set(), {})
    assert opts == UpOptions() and set(origin.values()) == {"default"}


def test_dry_run_shows_where_values_came_from(tmp_path):
    config = tmp_path / ".config" / "dask"
    config.mkdir(parents=True)
    (config / "jobqueue.yaml").write_text(
        "jobqueue:\n  slurm:\n    cores: 4\n    processes: 2\n    interface: lo\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "DASK"))}
    env.update(HOME=str(tmp_path), DASKLAUNCH_STATE_DIR=str(tmp_path / "state"))
    out = subprocess.run([sys.executable, "-m", "dasklaunch", "up", "--dry-run",
                          "--local-tasks", "1", "--nthreads", "3"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "# interface: from jobqueue.yaml: interface=lo" in out.stdout
    assert "# nworkers: from jobqueue.yaml: processes=2" in out.stdout
    assert "# nthreads: from command line" in out.stdout
    assert "--nthreads 3 --nworkers 2" in out.stdout and "--interface lo" in out.stdout


def test_processes_are_per_node_as_in_dask_jobqueue(tmp_path):
    """cores: 64, processes: 8, memory: 240GB with 8 tasks per node: 8 workers per node (one
    `dask worker --nworkers 8` per node), not 8 per task; an oversized memory names its source."""
    config = tmp_path / ".config" / "dask"
    config.mkdir(parents=True)
    (config / "jobqueue.yaml").write_text(
        "jobqueue:\n  slurm:\n    cores: 64\n    processes: 8\n    memory: 240GB\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "DASK"))}
    env.update(HOME=str(tmp_path), DASKLAUNCH_STATE_DIR=str(tmp_path / "state"),
               PATH=f"{FAKE_BIN}{os.pathsep}{env['PATH']}", FAKE_SLURM_DIR=str(tmp_path / "fs"),
               FAKE_SLURM_JOB_ID="77", SLURM_JOB_ID="77", SLURM_JOB_NODELIST="nid[001-002]",
               SLURM_TASKS_PER_NODE="8(x2)", SLURM_JOB_CPUS_PER_NODE="64(x2)",
               SLURM_MEM_PER_NODE="256000")
    up = [sys.executable, "-m", "dasklaunch", "up", "--dry-run"]
    out = subprocess.run(up, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert ("# backend slurm (Slurm 22.05.8), job 77, 16 workers (per-node, 8 threads each)"
            in out.stdout)
    assert "--nthreads 8 --nworkers 8 --memory-limit 30000000000" in out.stdout
    assert "--ntasks=2 --ntasks-per-node=1" in out.stdout
    small = subprocess.run(up, env={**env, "SLURM_MEM_PER_NODE": "200000"},
                           capture_output=True, text=True, timeout=60)
    assert small.returncode == 2
    assert small.stderr.strip() == (
        "dasklaunch: error: memory limit 27.94 GiB (jobqueue.yaml: memory=240GB / "
        "processes=8) x 8 workers per node exceeds the allocation's 195.31 GiB per node "
        "(SLURM_MEM_PER_NODE=200000)")


def _config_env(tmp_path, monkeypatch) -> dict[str, str]:
    home = tmp_path / "home"
    (home / ".config" / "dask").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    return {"HOME": str(home), "DASK_ROOT_CONFIG": str(tmp_path / "etc")}


def test_no_jobqueue_config_is_known_without_importing_dask(tmp_path, monkeypatch):
    from dasklaunch.profiles.jobqueue import may_set_jobqueue

    env = _config_env(tmp_path, monkeypatch)
    (tmp_path / "home" / ".config" / "dask" / "distributed.yaml").write_text(
        "distributed:\n  worker:\n    memory:\n      target: 0.7\n")
    assert not may_set_jobqueue(env)
    assert may_set_jobqueue({**env, "DASK_JOBQUEUE__SLURM__CORES": "4"})
    assert may_set_jobqueue({**env, "DASK_INTERNAL_INHERIT_CONFIG": "e30="})
    # what importing dask_jobqueue once leaves behind: its defaults, every line commented out
    (tmp_path / "home" / ".config" / "dask" / "jobqueue.yaml").write_text(
        "# jobqueue:\n#   slurm:\n#     name: dask-worker\n#     interface: null\n")
    assert not may_set_jobqueue(env)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "broken.yaml").write_text("jobqueue: [unclosed\n")
    assert may_set_jobqueue(env)
    (tmp_path / "etc" / "broken.yaml").unlink()
    (tmp_path / "etc" / "site.yml").write_text("jobqueue:\n  slurm:\n    interface: ib0\n")
    assert may_set_jobqueue(env)


def test_the_quick_check_finds_what_dask_finds(tmp_path, monkeypatch):
    env = _config_env(tmp_path, monkeypatch)
    extra = tmp_path / "extra.yaml"
    extra.write_text("jobqueue:\n  slurm:\n    cores: 6\n")
    code = ("from dasklaunch.profiles.jobqueue import may_set_jobqueue, user_jobqueue_slurm; "
            "import sys; print(may_set_jobqueue(), user_jobqueue_slurm(), "
            "'dask' in sys.modules)")
    run = {**os.environ, **env}
    run.pop("DASK_CONFIG", None)
    quiet = subprocess.run([sys.executable, "-c", code], env=run, capture_output=True,
                           text=True, timeout=60, check=True)
    assert quiet.stdout.split() == ["False", "{}", "False"]
    found = subprocess.run([sys.executable, "-c", code], env={**run, "DASK_CONFIG": str(extra)},
                           capture_output=True, text=True, timeout=60, check=True)
    assert found.stdout.strip() == "True {'cores': 6} True"


def test_scale_out_jobs_run_the_prologue_and_get_the_jobs_worker_environment(tmp_path):
    config = tmp_path / "jobqueue.yaml"
    config.write_text("jobqueue:\n  slurm:\n    job-script-prologue:\n      - module load dask\n")
    code = f"""
from dasklaunch.ops.scale_out import worker_job_script
from dasklaunch.domain.settings import UpOptions
from dasklaunch.runtime.state import StateDir
opts = UpOptions(tls=False, profile="seed", start_method="fork")
from dasklaunch.runtime.record import ClusterRecord
record = ClusterRecord(job_id="1", backend="slurm", address="tcp://10.0.0.1:8786", options=opts)
print(worker_job_script(record, StateDir({str(tmp_path)!r}), name="dl-x", cores=2,
                        memory=2**30, processes=1, walltime="00:05:00", job_options=[]))
"""
    env = {**os.environ, "DASK_CONFIG": str(config), "HOME": str(tmp_path)}
    env.pop("OMP_NUM_THREADS", None)
    script = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60, check=True).stdout
    assert "\nmodule load dask\n" in script
    assert script.index("module load dask") < script.index("distributed.cli.dask_worker")
    # the workers of scale-out jobs get what the job's own worker steps get
    assert f"\nexport DASK_CONFIG={tmp_path}/dask\n" in script
    assert "\nexport DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD=fork\n" in script
    assert "\nexport OMP_NUM_THREADS=1\n" in script
    # without a pool, dask-jobqueue's worker names stay; SIGTERM reaches the step 30 s before
    # the walltime: the drain (20 s) and the exit fit; no drain while `down` stops everything
    assert (f"-m dasklaunch.launch.node --drain-timeout 20 --no-drain-file {tmp_path}/no-drain "
            f"--keep-name -- ") in script
    assert "\n#SBATCH --signal=TERM@30\n" in script


def test_scale_out_jobs_copy_a_gpu_pools_shape(tmp_path):
    code = f"""
from dasklaunch.domain.settings import UpOptions
from dasklaunch.ops.scale_out import pool_shape, worker_job_script
from dasklaunch.domain.step_plan import StepPlan
from dasklaunch.runtime.record import ClusterRecord, StepRun
from dasklaunch.runtime.state import StateDir
cmd = ["py", "-m", "dasklaunch.launch.node", "--pool", "gpu", "--gpus-per-worker", "1", "--",
       "py", "-m", "distributed.cli.dask_worker", "--nthreads", "2", "--nworkers", "1",
       "--memory-limit", "1000000000", "--resources", "GPU=1"]
pool = StepRun(StepPlan(role="workers", name="dl-w", placement="per-node", ntasks=2, nnodes=2,
                        command=tuple(cmd), pool="gpu", expected=4))
record = ClusterRecord(job_id="1", backend="slurm", address="tcp://10.0.0.1:8786",
                       options=UpOptions(tls=False), pools=[pool])
shape = pool_shape(record, "gpu")
print(shape)
print(worker_job_script(record, StateDir({str(tmp_path)!r}), name="dl-x", cores=9,
                        memory=2**30, processes=5, walltime=None, job_options=[], shape=shape))
"""
    env = {**os.environ, "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "'workers_per_node': 2" in out and "'gpus_per_worker': 1" in out
    assert "#SBATCH --gpus-per-node=2" in out
    # in a step of its own (scancel and --signal reach it), under the node launcher (drains)
    assert ("srun --ntasks=1 --nodes=1 --cpus-per-task=2 --kill-on-bad-exit=1 " in out
            and f"-m dasklaunch.launch.node --drain-timeout 20 --no-drain-file {tmp_path}/no-drain "
                f"--prefork --pool gpu "
                "--gpus-per-worker 1 --" in out)
    assert "--nworkers" not in out and "--nthreads 2" in out  # one worker per GPU
    # SLURMJob's own --memory-limit (the whole job's) comes first: the pool's share wins
    assert out.index("--memory-limit 1.86GiB") < out.index("--memory-limit 1000000000")
    assert "--resources GPU=1" in out


def test_a_pools_shape_comes_from_its_plan_and_old_records_from_its_command():
    from dasklaunch.domain.step_plan import StepPlan
    from dasklaunch.ops.scale_out import pool_shape
    from dasklaunch.runtime.record import ClusterRecord, StepRun

    planned = StepRun(StepPlan(role="workers", name="dl-w", placement="per-node", ntasks=2,
                               nnodes=2, command=(), pool="gpu", expected=4, nthreads=2,
                               memory_limit="1000000000", gpus_per_worker=1,
                               resources=(("GPU", "1"),), worker_class="my.W"))
    record = ClusterRecord(job_id="1", backend="slurm", pools=[planned])
    # nothing is read back from a command line: this one is empty
    assert pool_shape(record, "gpu") == {
        "pool": "gpu", "workers_per_node": 2, "nthreads": 2, "memory_limit": "1000000000",
        "gpus_per_worker": 1, "resources": "GPU=1", "worker_class": "my.W"}
    again = ClusterRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert pool_shape(again, "gpu") == pool_shape(record, "gpu")
