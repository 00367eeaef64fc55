"""Draining on the real testbed: a persisted collection spread over two pools (or the job's pool
and a scale-out job); a planned end of one of them (restart-workers --pool, scancel
--signal=TERM of a worker job) keeps every key in memory and recomputes nothing; SIGKILL (the
control) loses them, and the result is still right."""

from __future__ import annotations

from slurmbed import PERSIST


def test_restart_of_one_pool_drains_into_the_other(slurm):
    result = slurm.salloc(PERSIST + '''
dl("up", "--interface", "lab0", "--pool", "a:nodes=1", "--pool", "b:nodes=2")
with dasklaunch.connect(timeout="30s") as client:
    futures = persist(client, lambda n: n.startswith("a-"), lambda n: n.startswith("b-"))
    start = time.time()
    dl("restart-workers", "--pool", "a")
    out["restart_s"] = time.time() - start
    outcome(client, futures)
out["status"] = json.loads(dl("status", "--json").stdout)
dl("down")
''', "-N3", timeout=300)
    assert result["right"] and result["held"] == 12
    assert result["runs"] == 12, result  # nothing recomputed
    drains = result["status"]["drains"]
    print(f"\ndrain figures: restart-workers --pool a took {result['restart_s']:.1f} s; "
          f"drains {drains}")
    assert drains["count"] >= 1 and drains["keys_moved"] == 6 and drains["keys_lost"] == 0


def test_scancel_term_of_a_worker_job_drains_and_kill_does_not(slurm):
    result = slurm.salloc(PERSIST + '''
dl("up", "--interface", "lab0", "--profile", "seed")
jobs = {}
with dasklaunch.connect(timeout="30s") as client:
    for sig in ("TERM", "KILL"):
        scale = json.loads(dl("scale-out", "--jobs", "1", "--cores", "1", "--memory", "300MB",
                              "--json").stdout)
        job = scale["jobs"][-1]["job_id"]
        out["n_" + sig] = wait_workers(client, 2)
        # the job's own worker first (its name is the pool's), then the scale-out job's
        futures = persist(client, lambda n: n.startswith("dl-scale"),
                          lambda n: not n.startswith("dl-scale"))
        start = time.time()
        # SIGKILL to the job would cancel it (SIGTERM, KillWait, SIGKILL: a planned end that
        # drains); to its worker step Slurm sends SIGKILL at once
        sh("scancel", "--signal=" + sig, job if sig == "TERM" else job + ".0")
        wait_workers(client, 1)
        out["gone_s_" + sig] = time.time() - start
        outcome(client, futures)
        out[sig] = {k: out[k] for k in ("held", "right", "runs")}
        client.unregister_scheduler_plugin("count-runs")
        client.cancel(futures)
        dl("scale-out", "--jobs", "0")
        sh("scancel", job)
    out["status"] = json.loads(dl("status", "--json").stdout)
dl("down")
''', "-N1", "-n1", "--exclusive", timeout=400)
    assert result["n_TERM"] == 2 and result["n_KILL"] == 2
    assert result["TERM"] == {"held": 12, "right": True, "runs": 12}, result
    # the control: SIGKILL loses the job's keys, which are computed again
    assert result["KILL"]["right"] and result["KILL"]["runs"] == 18, result
    assert result["status"]["drains"]["keys_moved"] == 6
    print(f"\ndrain figures: scancel TERM -> worker gone {result['gone_s_TERM']:.1f} s, "
          f"KILL -> gone {result['gone_s_KILL']:.1f} s; drains {result['status']['drains']}")
