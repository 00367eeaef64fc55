"""scale-out's worker-only jobs run their workers in the cluster's container (or the pool's, or
`scale-out --container`): the job script's srun step starts the node launcher with the image's
Python, inside the runtime (Pyxis: srun's options), and exports what the containers need. The
scripts are built in a subprocess, as tests/test_jobqueue.py builds them (importing
dask_jobqueue changes the process)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dasklaunch.domain.container import ContainerJob
from dasklaunch.domain.pool_spec import parse_pool
from dasklaunch.domain.settings import UpOptions
from dasklaunch.errors import UsageError
from dasklaunch.ops.container_setup import worker_job_container
from dasklaunch.runtime.record import ClusterRecord

IMAGE_PY = "/opt/env/bin/python"


def record(runtime: str = "apptainer", state: str = "/s") -> ClusterRecord:
    job = ContainerJob(runtime=runtime, image="dask.sif", binds=(state, "/tmp"), workdir=state,
                       pythons=(("dask.sif", IMAGE_PY), ("rapids.sif", "/rapids/bin/python")))
    opts = UpOptions(tls=False, container="dask.sif", container_runtime=runtime,
                     pools=(parse_pool("cpu"), parse_pool("gpu:container=rapids.sif")))
    return ClusterRecord(job_id="1", backend="slurm", address="tcp://10.0.0.1:8786",
                         options=opts, container=job.to_dict())


def test_the_image_is_the_pools_the_clusters_or_the_one_asked_for():
    r = record()
    assert worker_job_container(r, None, None)[1] == "dask.sif"
    assert worker_job_container(r, "cpu", None)[1] == "dask.sif"
    assert worker_job_container(r, "gpu", None)[1] == "rapids.sif"
    assert worker_job_container(r, "gpu", "dask.sif")[1] == "dask.sif"
    assert worker_job_container(r, None, "none")[1] is None
    bare = ClusterRecord(job_id="1", backend="slurm")
    assert worker_job_container(bare, None, None) == (None, None)


@pytest.mark.parametrize("r, image, needle", [
    (record(), "other.sif", "not an image this cluster's `up` checked (dask.sif, rapids.sif)"),
    (ClusterRecord(job_id="1", backend="slurm"), "x.sif", "(it runs none)"),
    (record(), "-x", "an image does not start with '-'"),
])
def test_an_image_up_did_not_check_is_refused(r, image, needle):
    with pytest.raises(UsageError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        worker_job_container(r, None, image)


def script(tmp_path, runtime: str, container: str | None = None) -> str:
    code = f"""
import sys
sys.path.insert(0, {os.path.dirname(__file__)!r})
from test_container_scale_out import record
from dasklaunch.ops.scale_out import worker_job_script
from dasklaunch.runtime.state import StateDir
print(worker_job_script(record({runtime!r}, {str(tmp_path)!r}), StateDir({str(tmp_path)!r}),
                        name="dl-x", cores=2, memory=2**30, processes=1, walltime=None,
                        job_options=[], container={container!r}))
"""
    env = {**os.environ, "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, check=True).stdout


def test_apptainer_worker_jobs(tmp_path):
    text = script(tmp_path, "apptainer")
    step = next(line for line in text.splitlines() if "dasklaunch.launch.node" in line)
    assert step.startswith("srun --ntasks=1 --nodes=1 --cpus-per-task=2 --kill-on-bad-exit=1 "
                           f"apptainer exec --bind {tmp_path}:{tmp_path} --bind /tmp:/tmp ")
    assert (f"--env PYTHONNOUSERSITE=1 --pwd {tmp_path} dask.sif {IMAGE_PY} -m "
            f"dasklaunch.launch.node") in step
    assert f"--keep-name -- {IMAGE_PY} -m distributed.cli.dask_worker tcp://10.0.0.1:8786" in step
    assert "\nexport PYTHONNOUSERSITE=1\n" in text


def test_pyxis_worker_jobs(tmp_path):
    step = next(line for line in script(tmp_path, "pyxis").splitlines()
                if "dasklaunch.launch.node" in line)
    assert step.startswith("srun --ntasks=1 --nodes=1 --cpus-per-task=2 --kill-on-bad-exit=1 "
                           f"--container-image=dask.sif --container-mounts={tmp_path}:{tmp_path},"
                           f"/tmp:/tmp --container-workdir={tmp_path} --container-env=")
    assert f" {IMAGE_PY} -m dasklaunch.launch.node" in step


def test_worker_jobs_on_the_host_when_asked(tmp_path):
    text = script(tmp_path, "podman", container="none")
    step = next(line for line in text.splitlines() if "dasklaunch.launch.node" in line)
    assert "podman" not in step and f"{sys.executable} -m dasklaunch.launch.node" in step
    assert "PYTHONNOUSERSITE" not in text
