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


# Run by srun on node3, in one process, each attempt bounded: a Client without certificates
# (fails), dasklaunch.connect() to a copy of the cluster's state dir with a foreign CA (fails:
# the scheduler refuses it), then dasklaunch.connect() to the cluster itself. With Python 3.13
# and distributed 2026.8 a Client after a failed one deadlocked when the collector closed the
# failed one inside the new one's loop start (see api.new_client).
CONNECT_AFTER_FAILURES = """
import faulthandler, json, shutil, sys
from pathlib import Path
import dasklaunch
from dasklaunch.api import new_client
from dasklaunch.runtime import schedfile, tls
from dasklaunch.runtime.state import StateDir
real, foreign = Path(sys.argv[1]), StateDir(Path(sys.argv[2]))
foreign.create()
shutil.copy(real / "scheduler.json", foreign.scheduler_file)
tls.create(foreign, "foreign")
address = schedfile.read(foreign.scheduler_file).address
attempts = (("no-certs", lambda: new_client(address=address, security=None, timeout=5)),
            ("foreign-ca", lambda: dasklaunch.connect(foreign.path, timeout=5)),
            ("the job's", lambda: dasklaunch.connect(real, timeout=5)))
res = {}
for attempt, connect in attempts:
    faulthandler.dump_traceback_later(30, exit=True)
    print("ATTEMPT", attempt, file=sys.stderr, flush=True)
    try:
        client = connect()
        res[attempt] = len(client.scheduler_info(n_workers=-1)["workers"])
        client.close()
    except Exception as err:
        res[attempt] = type(err).__name__
    faulthandler.cancel_dump_traceback_later()
print("CONNECT " + json.dumps(res), flush=True)
"""


def test_a_second_connect_after_a_failed_one_returns(slurm, tmp_path):
    result = slurm.salloc(f'''
dl("up", "--interface", "lab0")
env = {{k: v for k, v in os.environ.items() if not k.startswith("DASK_")}}
p = subprocess.run(["srun", "--overlap", "-N1", "-n1", "--nodelist=node3", sys.executable,
                    "-c", {CONNECT_AFTER_FAILURES!r}, os.environ["DASKLAUNCH_STATE_DIR"],
                    "{tmp_path}/foreign"], capture_output=True, text=True, timeout=90, env=env)
out["connect"] = [json.loads(l[8:]) for l in p.stdout.splitlines() if l.startswith("CONNECT ")]
out["stderr"] = p.stderr[-3000:]
dl("down")
''', "-N3")
    assert result["connect"], result["stderr"]   # a hang prints the attempt and its stack
    outcome = result["connect"][0]
    assert outcome["no-certs"] == "TypeError" and outcome["foreign-ca"] not in (0, 1, 2, 3), outcome
    assert outcome["the job's"] == 3, (outcome, result["stderr"])
