"""The fake Slurm (tests/fakeslurm) is only worth its tests if it refuses what Slurm 22.05
refuses, places tasks where Slurm would, and answers every form of squeue/scontrol that
dasklaunch sends. Each claim runs the fake tools as subprocesses, in the environment
`fake_slurm_runner` sets (one node `localhost` with 2 CPUs), or in a bigger job made from it."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from procs import FAKE_BIN

JOB = "4242"  # the job fake_slurm_runner sets up

THREE_NODES = {"SLURM_JOB_NODELIST": "node[1-3]", "SLURM_NNODES": "3", "SLURM_NTASKS": "6",
               "SLURM_TASKS_PER_NODE": "2(x3)", "SLURM_JOB_CPUS_PER_NODE": "2(x3)"}
# nodes with different CPU counts: Slurm words some refusals differently then
MIXED = {"SLURM_JOB_NODELIST": "big1,small1", "SLURM_NNODES": "2", "SLURM_NTASKS": "5",
         "SLURM_TASKS_PER_NODE": "4,1", "SLURM_JOB_CPUS_PER_NODE": "4,1"}

# each task writes its SLURM_* environment as one JSON line, in one write (tasks run at once)
TASK = ("import json, os; os.write(1, (json.dumps({k: v for k, v in os.environ.items() "
        "if k.startswith(('SLURM_', 'SLURMD_'))}) + '\\n').encode())")


@pytest.fixture
def env(fake_slurm_runner) -> dict[str, str]:
    assert fake_slurm_runner.env["FAKE_SLURM_JOB_ID"] == JOB
    return dict(fake_slurm_runner.env)


def fake_dir(env: dict[str, str]) -> Path:
    return Path(env["FAKE_SLURM_DIR"])


def set_jobs(env: dict[str, str], table: dict) -> None:
    fake_dir(env).mkdir(parents=True, exist_ok=True)
    (fake_dir(env) / "jobs.json").write_text(json.dumps(table))


def tool(env: dict[str, str], name: str, *args: str, **extra: str
         ) -> subprocess.CompletedProcess:
    return subprocess.run([str(FAKE_BIN / name), *args], env={**env, **extra},
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def srun(env: dict[str, str], *layout: str, jobid: str = JOB, **extra: str
         ) -> subprocess.CompletedProcess:
    return tool(env, "srun", f"--jobid={jobid}", "--job-name=dl-test", "--overlap", *layout,
                "--kill-on-bad-exit=0", sys.executable, "-c", TASK, **extra)


def task_envs(result: subprocess.CompletedProcess) -> list[dict[str, str]]:
    assert result.returncode == 0, result.stderr
    return sorted((json.loads(line) for line in result.stdout.splitlines()),
                  key=lambda task: int(task["SLURM_PROCID"]))


def test_srun_version(env):
    result = tool(env, "srun", "--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, "slurm 22.05.8\n", "")


# --------------------------------------------------------------------------- where tasks run

LAYOUTS = [
    # (job, srun layout, [(PROCID, NODEID, LOCALID, SLURMD_NODENAME)],
    #  SLURM_STEP_NODELIST, SLURM_TASKS_PER_NODE)
    ({}, ["--nodes=1", "--ntasks=2"],
     [(0, 0, 0, "localhost"), (1, 0, 1, "localhost")], "localhost", "2"),
    ({}, ["--nodes=1", "--ntasks=1", "--nodelist=localhost"],
     [(0, 0, 0, "localhost")], "localhost", "1"),
    (THREE_NODES, ["--nodes=3", "--ntasks=6"],
     [(0, 0, 0, "node1"), (1, 0, 1, "node1"), (2, 1, 0, "node2"), (3, 1, 1, "node2"),
      (4, 2, 0, "node3"), (5, 2, 1, "node3")], "node[1-3]", "2(x3)"),
    # block distribution: counts go round-robin, ids node by node
    (THREE_NODES, ["--nodes=3", "--ntasks=4"],
     [(0, 0, 0, "node1"), (1, 0, 1, "node1"), (2, 1, 0, "node2"), (3, 2, 0, "node3")],
     "node[1-3]", "2,1(x2)"),
    (THREE_NODES, ["--nodes=3", "--ntasks=3", "--ntasks-per-node=1"],
     [(0, 0, 0, "node1"), (1, 1, 0, "node2"), (2, 2, 0, "node3")], "node[1-3]", "1(x3)"),
    # a step on part of the job: NODEID counts the step's nodes, not the job's
    (THREE_NODES, ["--nodes=2", "--ntasks=2"],
     [(0, 0, 0, "node1"), (1, 1, 0, "node2")], "node[1-2]", "1(x2)"),
    (THREE_NODES, ["--nodes=1", "--ntasks=1", "--nodelist=node3"],
     [(0, 0, 0, "node3")], "node3", "1"),
    (MIXED, ["--nodes=2", "--ntasks=5"],
     [(0, 0, 0, "big1"), (1, 0, 1, "big1"), (2, 0, 2, "big1"), (3, 0, 3, "big1"),
      (4, 1, 0, "small1")], "big1,small1", "4,1"),
]


@pytest.mark.parametrize("job, layout, places, step_nodes, per_node", LAYOUTS,
                         ids=[" ".join(layout) + " of " + job.get("SLURM_JOB_NODELIST", "localhost")
                              for job, layout, *_ in LAYOUTS])
def test_tasks_are_placed_like_slurm_block_distribution(env, job, layout, places, step_nodes,
                                                        per_node):
    tasks = task_envs(srun(env, *layout, **job))
    assert [(int(t["SLURM_PROCID"]), int(t["SLURM_NODEID"]), int(t["SLURM_LOCALID"]),
             t["SLURMD_NODENAME"]) for t in tasks] == places
    job_nodes = job.get("SLURM_JOB_NODELIST", env["SLURM_JOB_NODELIST"])
    nodes_of_step = {t["SLURMD_NODENAME"] for t in tasks}
    for task in tasks:
        assert task["SLURM_STEP_NODELIST"] == step_nodes
        assert task["SLURM_TASKS_PER_NODE"] == task["SLURM_STEP_TASKS_PER_NODE"] == per_node
        assert task["SLURM_NTASKS"] == task["SLURM_STEP_NUM_TASKS"] == str(len(places))
        assert task["SLURM_NNODES"] == task["SLURM_STEP_NUM_NODES"] == str(len(nodes_of_step))
        assert task["SLURM_JOB_NODELIST"] == job_nodes  # the job's, not the step's
        assert task["SLURM_JOB_ID"] == task["SLURM_JOBID"] == JOB
        assert task["SLURM_STEP_ID"] == task["SLURM_STEPID"] == "0"
        same_node = [t["SLURM_PROCID"] for t in tasks
                     if t["SLURMD_NODENAME"] == task["SLURMD_NODENAME"]]
        assert task["SLURM_GTIDS"] == ",".join(same_node)


def test_each_step_gets_the_next_step_id(env):
    first = task_envs(srun(env, "--nodes=1", "--ntasks=1"))
    second = task_envs(srun(env, "--nodes=1", "--ntasks=1"))
    assert (first[0]["SLURM_STEP_ID"], second[0]["SLURM_STEP_ID"]) == ("0", "1")


# ---------------------------------------------------------------------------------- refusals

UNAVAILABLE = f"srun: error: Unable to create step for job {JOB}: " \
              "Requested node configuration is not available"
TOO_MANY_CPUS = f"srun: error: Unable to create step for job {JOB}: " \
                "More processors requested than permitted"
REFUSALS = {
    "more nodes than the job has": (
        {}, ["--nodes=2", "--ntasks=2"], ["srun: error: Only allocated 1 nodes asked for 2"]),
    "more nodes than a 3-node job has": (
        THREE_NODES, ["--nodes=4", "--ntasks=4"],
        ["srun: error: Only allocated 3 nodes asked for 4"]),
    "ntasks below nodes": (
        THREE_NODES, ["--nodes=3", "--ntasks=2"],
        ["srun: Warning: can't run 2 processes on 3 nodes, setting nnodes to 2",
         "fake srun: refusing a layout srun would change (--ntasks < --nodes)"]),
    "ntasks-per-node x nodes above ntasks": (
        THREE_NODES, ["--nodes=3", "--ntasks=4", "--ntasks-per-node=2"],
        ["srun: Warning: can't honor --ntasks-per-node set to 2 which doesn't match the "
         "requested tasks 4 with the number of requested nodes 3. Ignoring --ntasks-per-node.",
         "fake srun: refusing a layout srun would change "
         "(--ntasks-per-node x --nodes != --ntasks)"]),
    "ntasks-per-node x nodes below ntasks": (
        THREE_NODES, ["--nodes=3", "--ntasks=6", "--ntasks-per-node=1"],
        ["srun: Warning: can't honor --ntasks-per-node set to 1 which doesn't match the "
         "requested tasks 6 with the number of requested nodes 3. Ignoring --ntasks-per-node.",
         "fake srun: refusing a layout srun would change "
         "(--ntasks-per-node x --nodes != --ntasks)"]),
    "a node outside the job": (
        THREE_NODES, ["--nodes=1", "--ntasks=1", "--nodelist=node9"], [UNAVAILABLE]),
    "a node outside the default job": (
        {}, ["--nodes=1", "--ntasks=1", "--nodelist=node1"], [UNAVAILABLE]),
    "a nodelist longer than --nodes": (
        THREE_NODES, ["--nodes=1", "--ntasks=2", "--nodelist=node[1-2]"], [UNAVAILABLE]),
    "more tasks than CPUs": (
        {}, ["--nodes=1", "--ntasks=3"], [TOO_MANY_CPUS]),
    "more tasks than the CPUs of 3 nodes": (
        THREE_NODES, ["--nodes=3", "--ntasks=7"], [TOO_MANY_CPUS]),
    "more tasks than the CPUs of the step's nodes": (
        THREE_NODES, ["--nodes=1", "--ntasks=3"], [TOO_MANY_CPUS]),
    "more CPUs than the job has, with SRUN_CPUS_PER_TASK": (
        {"SRUN_CPUS_PER_TASK": "2"}, ["--nodes=1", "--ntasks=2"], [TOO_MANY_CPUS]),
    "more tasks than the CPUs of different nodes": (
        MIXED, ["--nodes=2", "--ntasks=6"], [UNAVAILABLE]),
    "more tasks per node than a small node has": (
        MIXED, ["--nodes=2", "--ntasks=4", "--ntasks-per-node=2"], [UNAVAILABLE]),
    "zero tasks": (
        {}, ["--nodes=1", "--ntasks=0"], ['srun: error: Invalid numeric value "0" for --ntasks.']),
    "zero tasks per node": (
        {}, ["--nodes=1", "--ntasks=1", "--ntasks-per-node=0"],
        ['srun: error: Invalid numeric value "0" for --ntasks-per-node.']),
    "zero nodes": (
        {}, ["--nodes=0", "--ntasks=1"],
        ["fake srun: --nodes=0 leaves the node count to Slurm; "
         "dasklaunch must say how many nodes it wants"]),
}


@pytest.mark.parametrize("job, layout, stderr", REFUSALS.values(), ids=REFUSALS.keys())
def test_srun_refuses_what_slurm_refuses(env, job, layout, stderr):
    result = srun(env, *layout, **job)
    assert result.returncode == 1
    assert result.stderr.splitlines() == stderr
    assert result.stdout == "", "no task may run"
    assert not list((fake_dir(env) / "steps").glob("*")), "no step may be created"


def test_srun_refuses_a_job_that_is_not_there(env):
    result = srun(env, "--nodes=1", "--ntasks=1", jobid="999")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        "srun: error: Unable to confirm allocation for job 999: Invalid job id specified",
        "srun: Check SLURM_JOB_ID environment variable. Expired or invalid job 999"]
    set_jobs(env, {JOB: {"state": "TIMEOUT"}})
    result = srun(env, "--nodes=1", "--ntasks=1")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines()[0] == f"srun: error: Slurm job {JOB} has expired"


def test_srun_sees_the_nodes_the_job_has_left(env):
    # what slurmctld does to a --no-kill job that lost node3
    set_jobs(env, {JOB: {"nodelist": "node[1-2]"}})
    result = srun(env, "--nodes=3", "--ntasks=3", **THREE_NODES)
    assert result.stderr.splitlines() == ["srun: error: Only allocated 2 nodes asked for 3"]
    tasks = task_envs(srun(env, "--nodes=2", "--ntasks=4", **THREE_NODES))
    assert [t["SLURMD_NODENAME"] for t in tasks] == ["node1", "node1", "node2", "node2"]
    show = tool(env, "scontrol", "show", "job", "--oneliner", JOB, **THREE_NODES)
    assert "NodeList=node[1-2]" in show.stdout.split() and "NumNodes=2" in show.stdout.split()


# ---------------------------------------------------------------------------------- squeue

def squeue(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return tool(env, "squeue", "--noheader", *args)


def test_squeue_state_and_end_time_of_the_job(env):
    assert squeue(env, f"--jobs={JOB}", "--format=%T").stdout == "RUNNING\n"
    assert squeue(env, f"--jobs={JOB}", "--format=%e").stdout == "N/A\n"
    set_jobs(env, {JOB: {"end_time": "2026-12-01T05:00:00"}})
    assert squeue(env, f"--jobs={JOB}", "--format=%e").stdout == "2026-12-01T05:00:00\n"


def test_squeue_several_jobs_with_id_and_state(env):
    set_jobs(env, {"4243": {"state": "PENDING"}, "4244": {"state": "COMPLETED"}})
    result = squeue(env, f"--jobs={JOB},4243,4244,999", "--format=%i %T")
    assert result.returncode == 0, result.stderr
    # an unknown or finished job is left out, without an error, when several are asked for
    assert result.stdout.splitlines() == [f"{JOB} RUNNING", "4243 PENDING"]


def test_squeue_one_job_that_ended_or_is_unknown(env):
    unknown = squeue(env, "--jobs=999", "--format=%T")
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr == "slurm_load_jobs error: Invalid job id specified\n"
    set_jobs(env, {JOB: {"state": "CANCELLED"}})
    ended = squeue(env, f"--jobs={JOB}", "--format=%T")  # still known: listed as nothing
    assert (ended.returncode, ended.stdout, ended.stderr) == (0, "", "")
    (fake_dir(env) / "ended").touch()  # purged
    purged = squeue(env, f"--jobs={JOB}", "--format=%T")
    assert purged.returncode == 1 and "Invalid job id specified" in purged.stderr


def test_squeue_steps_of_the_job(env):
    fake_dir(env).mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [str(FAKE_BIN / "srun"), f"--jobid={JOB}", "--job-name=dl-sleeper", "--overlap",
         "--nodes=1", "--ntasks=2", "--kill-on-bad-exit=0", sys.executable, "-c",
         "import time; time.sleep(60)"], env=env, start_new_session=True,
        stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not list((fake_dir(env) / "steps").glob("*")):
            time.sleep(0.05)
        steps = squeue(env, "--steps", f"--jobs={JOB}", "--format=%i %j")
        assert steps.stdout.splitlines() == [f"{JOB}.extern extern", f"{JOB}.0 dl-sleeper"]
        assert tool(env, "scancel", "--signal=TERM", f"{JOB}.0").returncode == 0
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    steps = squeue(env, "--steps", f"--jobs={JOB}", "--format=%i %j")
    assert steps.stdout.splitlines() == [f"{JOB}.extern extern"]
    (fake_dir(env) / "ended").touch()
    # squeue loads every step and filters: a job that is gone has none, and that is no error
    gone = squeue(env, "--steps", f"--jobs={JOB}", "--format=%i %j")
    assert (gone.returncode, gone.stdout, gone.stderr) == (0, "", "")


@pytest.mark.parametrize("args", [["--format=%N"], ["--format=%.18i"], ["--steps", "--format=%T"],
                                  ["--format=%i", "--states=all"]])
def test_squeue_rejects_forms_it_does_not_model(env, args):
    result = squeue(env, f"--jobs={JOB}", *args)
    assert result.returncode == 99 and "rejected arguments" in result.stderr


# -------------------------------------------------------------------------------- scontrol

@pytest.mark.parametrize("hostlist, hosts", [
    ("node[1-3]", ["node1", "node2", "node3"]),
    ("nid[008-010]", ["nid008", "nid009", "nid010"]),
    ("a[1-2],b3", ["a1", "a2", "b3"]),
    ("n[01-02,07],login1", ["n01", "n02", "n07", "login1"]),
    ("node[9-11]", ["node9", "node10", "node11"]),
    ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
    ("localhost", ["localhost"]),
])
def test_scontrol_show_hostnames_expands_host_lists(env, hostlist, hosts):
    result = tool(env, "scontrol", "show", "hostnames", hostlist)
    assert (result.returncode, result.stdout.splitlines(), result.stderr) == (0, hosts, "")


@pytest.mark.parametrize("hostlist", ["node[1-", "node[3-1]", "node[a-b]", "node]1["])
def test_scontrol_show_hostnames_says_so_for_a_malformed_list(env, hostlist):
    result = tool(env, "scontrol", "show", "hostnames", hostlist)
    # like scontrol: a message on stderr, nothing on stdout, and still exit code 0
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == f"Invalid hostlist: {hostlist}\n"


def test_scontrol_show_job(env):
    record = tool(env, "scontrol", "show", "job", "--oneliner", JOB, **THREE_NODES).stdout.split()
    assert {f"JobId={JOB}", "JobState=RUNNING", "NodeList=node[1-3]", "NumNodes=3",
            "NumCPUs=6"} <= set(record)
    unknown = tool(env, "scontrol", "show", "job", "--oneliner", "999")
    assert unknown.returncode == 1 and "Invalid job id specified" in unknown.stderr


# ------------------------------------------------------- what dasklaunch sends, answered

@pytest.fixture
def as_dasklaunch(env, monkeypatch):
    """This process in the fake allocation, so that dasklaunch's own code calls the fakes."""
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    for key, value in {**env, **THREE_NODES}.items():
        monkeypatch.setenv(key, value)
    return env


def test_dasklaunch_srun_argv_fits_the_job(as_dasklaunch):
    from dasklaunch.domain.step_plan import StepPlan
    from dasklaunch.slurm.commands import srun_argv

    command = (sys.executable, "-c", TASK)
    scheduler = StepPlan(role="scheduler", name="dl-sched", placement="first-node", ntasks=1,
                     nnodes=1, command=command)
    tasks = StepPlan(role="workers", name="dl-workers", placement="tasks", ntasks=6, nnodes=3,
                 command=command)
    per_node = StepPlan(role="workers", name="dl-workers", placement="per-node", ntasks=3,
                    nnodes=3, command=command)
    places = {}
    for name, argv in (("scheduler", srun_argv(scheduler, JOB, "node1")),
                       ("tasks", srun_argv(tasks, JOB)), ("per-node", srun_argv(per_node, JOB))):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        places[name] = [t["SLURMD_NODENAME"] for t in task_envs(result)]
    assert places == {"scheduler": ["node1"],
                      "tasks": ["node1", "node1", "node2", "node2", "node3", "node3"],
                      "per-node": ["node1", "node2", "node3"]}


def test_dasklaunch_squeue_and_scontrol_forms_are_answered(as_dasklaunch):
    from dasklaunch.ops.supervise import job_end_time
    from dasklaunch.slurm import queue

    assert queue.hostnames("node[1-3]") == ["node1", "node2", "node3"]
    assert queue.steps(JOB) == {"extern": f"{JOB}.extern"}
    assert queue.job_gone(JOB) is False  # the guard's question
    assert job_end_time(JOB, environ={}) is None  # N/A: no time limit
    set_jobs(as_dasklaunch, {JOB: {"end_time": "2026-12-01T05:00:00"},
                             "4243": {"state": "PENDING"}})
    assert job_end_time(JOB, environ={}) == datetime.datetime(2026, 12, 1, 5).timestamp()
    assert queue.job_states([JOB, "4243", "999"]) == {JOB: "RUNNING", "4243": "PENDING"}
    assert queue.job_gone("999") is True
    assert queue.version()[:2] == (22, 5)
