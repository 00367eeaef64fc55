"""The Python context manager inside an sbatch job on the testbed."""

from __future__ import annotations

from slurmbed import wait_no_processes


def test_cluster_context_manager_in_a_batch_job(slurm, tmp_path):
    data = tmp_path / "logs"
    data.mkdir()
    for i in range(6):
        (data / f"part{i}.json").write_text("".join(f'{{"n": {i * 100 + j}}}\n'
                                                    for j in range(100)))
    script = tmp_path / "analysis.py"
    script.write_text(
        "import json, os, socket\n"
        "import dask.bag\n"
        "import dasklaunch\n"
        f"os.environ['DASKLAUNCH_STATE_DIR'] = '{tmp_path}/state-' + os.environ['SLURM_JOB_ID']\n"
        "with dasklaunch.cluster(interface='lab0') as client:\n"
        f"    bag = dask.bag.read_text('{data}/*.json', blocksize='128MiB').map(json.loads)\n"
        "    total = bag.pluck('n').sum().compute()\n"
        "    hosts = sorted(set(client.run(socket.gethostname).values()))\n"
        "print('TOTAL', total, 'HOSTS', ' '.join(hosts))\n")
    out = tmp_path / "job.out"
    result = slurm.run(["timeout", "200", "sbatch", "--wait", "-N3", f"--output={out}",
                        "--wrap", f"python3 {script}"], timeout=230)
    text = out.read_text() if out.exists() else ""
    assert result.returncode == 0, result.stderr + text
    assert f"TOTAL {sum(range(600))} HOSTS node1 node2 node3" in text, text
    assert not wait_no_processes(str(tmp_path / "state-"), timeout=15)
