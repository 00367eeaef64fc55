"""Rolling worker jobs on the real testbed: `scale-out --jobs 1 --keep --walltime 2:30` under a
supervisor, over two generations; the connected workers, sampled every second, never drop below
what was asked once the first job is in, and no key is lost or recomputed."""

from __future__ import annotations

from slurmbed import PERSIST


def test_kept_worker_jobs_roll_over_without_losing_capacity_or_keys(slurm):
    result = slurm.salloc(PERSIST + '''
dl("up", "--interface", "lab0", "--profile", "seed", "--drain-timeout", "5")
supervise_log = os.path.join(os.path.dirname(os.environ["DASKLAUNCH_STATE_DIR"]), "supervise.log")
supervisor = subprocess.Popen([sys.executable, "-m", "dasklaunch", "supervise", "--interval", "1"],
                              stdout=open(supervise_log, "w"), stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
try:
    dl("scale-out", "--jobs", "1", "--keep", "--walltime", "2:30", "--cores", "1",
       "--memory", "300MB")
    with dasklaunch.connect(timeout="30s") as client:
        out["first"] = wait_workers(client, 2)
        futures = persist(client, lambda n: n.startswith("dl-scale"),
                          lambda n: not n.startswith("dl-scale"))
        samples, jobs_seen = [], set()
        deadline = time.time() + 240
        while time.time() < deadline:
            samples.append(len(client.scheduler_info()["workers"]))
            live = {j["job_id"] for j in record()["scale_out"]}
            jobs_seen |= live
            # two generations: the first job and its replacement were both drained away
            if len(jobs_seen - live) >= 2:
                break
            time.sleep(1)
        out["samples"] = samples
        out["jobs_seen"] = sorted(jobs_seen)
        outcome(client, futures)
    out["status"] = json.loads(dl("status", "--json").stdout)
finally:
    supervisor.terminate()
    supervisor.wait(timeout=30)
out["supervise_log"] = open(supervise_log).read()
dl("down")
out["left"] = jobs_left(out["jobs_seen"])
''', "-N1", "-n1", "--exclusive", timeout=420)
    log = result["supervise_log"]
    print(f"\nrolling figures: jobs {result['jobs_seen']}, connected workers per second "
          f"{result['samples']}\n{log}")
    assert result["first"] == 2
    assert len(result["jobs_seen"]) >= 3, log
    assert min(result["samples"]) >= 2, (result["samples"], log)
    assert result["held"] == 12 and result["right"] and result["runs"] == 12, (result, log)
    assert "to replace" in log and "draining worker job" in log and "drained 1 worker" in log
    assert result["status"]["drains"]["keys_lost"] == 0
    assert not result["left"].strip()
