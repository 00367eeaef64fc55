"""scale-out: worker-only jobs from dask-jobqueue's SLURMJob join this job's scheduler."""

from __future__ import annotations

from pathlib import Path


def test_scale_out_adds_and_down_cancels_worker_jobs(slurm, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    result = slurm.salloc(f'''
os.environ["HOME"] = "{home}"
dl("up", "--interface", "lab0", "--profile", "seed")
# a dry run shows the scripts and submits nothing
dry = dl("scale-out", "--jobs", "2", "--cores", "1", "--memory", "300MB", "--dry-run")
out["dry"] = dry.stdout
out["dry_queue"] = sh("squeue", "--noheader", "--format=%i")
out["dry_record"] = record()["scale_out"]
out["scale"] = json.loads(dl("scale-out", "--jobs", "2", "--cores", "1", "--memory", "300MB",
                             "--json").stdout)
for _ in range(120):
    st = json.loads(dl("status", "--json").stdout)
    if st["workers"]["connected"] == 3:
        break
    time.sleep(0.5)
out["status"] = st
import dask
from dasklaunch import connect
with connect(timeout="30s") as client:
    out["target"] = sorted(client.run(dask.config.get, "distributed.worker.memory.target").values())
out["script"] = open(out["scale"]["jobs"][0]["script"]).read()
out["fewer"] = json.loads(dl("scale-out", "--jobs", "1", "--json").stdout)
dl("down")
ids = [j["job_id"] for j in out["scale"]["jobs"]]
out["left"] = jobs_left(ids)
''', "-N1", "-n1", "--exclusive")
    assert result["dry"].count("#!/usr/bin/env bash") == 2, result["dry"]
    assert result["dry"].count("distributed.cli.dask_worker") == 2
    assert result["dry_queue"].split() == [result["job_id"]] and result["dry_record"] == []
    status = result["status"]
    assert status["workers"]["connected"] == 3, status
    assert len(status["hosts"]) >= 2  # node1 is held exclusively, so the worker jobs land elsewhere
    assert [j["state"] for j in status["scale_out"]] == ["RUNNING", "RUNNING"]
    assert result["target"] == [False, False, False]  # the job's profile reached the extra jobs too
    script = result["script"]
    assert "#SBATCH" in script and "--protocol tls" in script and "--interface lab0" in script
    assert "distributed.cli.dask_worker" in script
    assert len(result["fewer"]["jobs"]) == 1
    assert not result["left"].strip()
    # importing dask_jobqueue wrote nothing into the user's Dask config
    assert not (Path(home) / ".config" / "dask" / "jobqueue.yaml").exists()
