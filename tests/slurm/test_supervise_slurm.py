"""The supervisor on the real testbed: a killed worker step comes back by itself."""

from __future__ import annotations

from slurmbed import NODES, wait_no_processes


def test_supervisor_relaunches_a_cancelled_worker_step(slurm):
    result = slurm.salloc('''
from dasklaunch import connect
dl("up", "--interface", "lab0")
sup = subprocess.Popen([sys.executable, "-m", "dasklaunch", "supervise", "--interval", "0.5",
                        "--grace", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
with connect() as client:
    for _ in range(60):
        st = json.loads(dl("status", "--json").stdout)
        if (st["supervisor"] or {}).get("attached"):
            break
        time.sleep(0.5)
    pool = record()["pools"][0]
    step = [s.split()[0] for s in sh("squeue", "--noheader", "--steps",
                                     "--format=%i %j").splitlines()
            if s.split()[1] == pool["name"]][0]
    start = time.monotonic()
    sh("scancel", step)
    for _ in range(120):
        st = json.loads(dl("status", "--json").stdout)
        if st["restarts"] == 1 and st["workers"]["connected"] == 3:
            break
        time.sleep(0.5)
    out["recovery"] = time.monotonic() - start
    out["status"] = st
    out["hosts"] = sorted(client.run(socket.gethostname).values())
    out["compute"] = client.submit(sum, range(100)).result(timeout=60)
sup.terminate()
out["sup_rc"] = sup.wait(timeout=30)
out["sup_err"] = sup.stderr.read()
dl("down")
out["steps"] = steps()
''', "-N3")
    status = result["status"]
    assert status["restarts"] == 1 and status["workers"]["connected"] == 3, result["sup_err"]
    assert "exited" in status["supervisor"]["last_reason"]
    assert result["hosts"] == NODES and result["compute"] == 4950
    assert result["sup_rc"] == 0
    assert not result["steps"]
    print(f"recovery after scancel of the worker step: {result['recovery']:.1f}s")
    assert not wait_no_processes(str(slurm.state_dir), timeout=10)
