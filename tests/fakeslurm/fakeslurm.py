"""Fake srun/scancel/squeue/scontrol for tests of the Slurm backend on one machine.

They accept only the flags dasklaunch sends (argparse; anything else fails loudly), keep their
state in $FAKE_SLURM_DIR, and REALLY run the tasks locally with SLURM_* set. A step is a process
group led by the fake srun, so `scancel --signal=TERM JOB.STEP` reaches every task of it.

The job. $FAKE_SLURM_JOB_ID is the allocation: its nodes are $SLURM_JOB_NODELIST (a Slurm host
list, e.g. `node[1-3]`) and its CPUs per node $SLURM_JOB_CPUS_PER_NODE (`2(x3)`), else
$SLURM_CPUS_ON_NODE, else 1; it is RUNNING, with no end time (`N/A`). $FAKE_SLURM_DIR/jobs.json,
when a test writes it, changes that and adds other jobs (which squeue alone knows about):

    {"4242": {"state": "RUNNING", "end_time": "2026-12-01T05:00:00", "nodelist": "node[1-2]",
              "cpus_per_node": "2(x2)"},
     "4243": {"state": "PENDING"}}

A job in a final state (COMPLETED, CANCELLED, ...) is still known, as within Slurm's MinJobAge;
a job id named nowhere, or the allocation once $FAKE_SLURM_DIR/ended exists, is purged:
"Invalid job id specified".

What real Slurm (22.05) refuses, the fakes refuse, with its wording (src/srun/libsrun/opt.c,
srun_job.c, src/slurmctld/step_mgr.c):
  - more nodes than the job has: `srun: error: Only allocated 1 nodes asked for 2`;
  - --nodelist naming a node outside the job, or more nodes than --nodes:
    `srun: error: Unable to create step for job N: Requested node configuration is not available`;
  - more CPUs (tasks x $SRUN_CPUS_PER_TASK) than the job has on the step's nodes, --overlap or
    not: `... More processors requested than permitted` (the same CPU count on every node) or
    `... Requested node configuration is not available` (different counts);
  - --ntasks / --ntasks-per-node below 1: `srun: error: Invalid numeric value "0" for --ntasks.`;
  - a job that is gone: `Unable to confirm allocation for job N: Invalid job id specified`.
Where real srun only warns and then runs a layout other than the one asked for (--ntasks below
--nodes; --ntasks-per-node x nodes != --ntasks; --nodes=0), the fake prints srun's warning and
refuses: dasklaunch must never depend on Slurm rewriting the layout it asked for.

Tasks are placed like Slurm's default block distribution: the step takes the --nodelist nodes
plus the job's first others, in the job's order; counts per node go round-robin within each
node's CPUs, then task ids are given out node by node. Each task gets its own SLURM_PROCID,
SLURM_LOCALID, SLURM_NODEID (its node's index in the step), SLURMD_NODENAME, SLURM_GTIDS,
SLURM_CPUS_ON_NODE, and the step's SLURM_STEP_NODELIST, SLURM_NNODES, SLURM_NTASKS,
SLURM_TASKS_PER_NODE (SLURM_JOB_NODELIST stays the job's).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SLURM_VERSION = "22.05.8"
FINAL_STATES = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def state_dir() -> Path:
    path = os.environ.get("FAKE_SLURM_DIR")
    if not path:
        sys.exit("fake slurm: FAKE_SLURM_DIR is not set")
    Path(path, "steps").mkdir(parents=True, exist_ok=True)
    return Path(path)


def log_call(tool: str, argv: list[str]) -> None:
    with open(state_dir() / "calls.log", "a") as handle:
        handle.write(json.dumps([tool, *argv]) + "\n")


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- host and count lists

def expand_hostlist(expr: str) -> list[str]:
    """`nid[008-010],login1` -> nid008 nid009 nid010 login1, like Slurm (padding kept, several
    bracket groups in one name expand in order). ValueError when malformed."""
    hosts: list[str] = []
    for name in _top_level(expr):
        hosts.extend(_expand_name(name))
    return hosts


def _top_level(expr: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in expr:
        if char == "[":
            depth += 1
            if depth > 1:
                raise ValueError(expr)
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(expr)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth != 0:
        raise ValueError(expr)
    parts.append(current)
    if any(not part for part in parts):
        raise ValueError(expr)
    return parts


def _expand_name(name: str) -> list[str]:
    match = re.search(r"\[([^\]]*)\]", name)
    if not match:
        if "[" in name or "]" in name:
            raise ValueError(name)
        return [name]
    prefix, rest = name[: match.start()], name[match.end():]
    out = []
    for item in match.group(1).split(","):
        bounds = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not bounds:
            raise ValueError(name)
        low, high = bounds.group(1), bounds.group(2) or bounds.group(1)
        if int(high) < int(low):
            raise ValueError(name)
        for number in range(int(low), int(high) + 1):
            out.extend(_expand_name(prefix + str(number).zfill(len(low)) + rest))
    return out


def compress_hostlist(hosts: list[str]) -> str:
    """node1 node2 node3 login1 -> `node[1-3],login1` (Slurm's ranged string, order kept)."""
    groups: list[tuple[str, list[str] | None]] = []
    for host in hosts:
        match = re.fullmatch(r"(.*?)(\d+)", host)
        if not match:
            groups.append((host, None))
        elif groups and groups[-1][1] is not None and groups[-1][0] == match.group(1):
            groups[-1][1].append(match.group(2))
        else:
            groups.append((match.group(1), [match.group(2)]))
    parts = []
    for prefix, numbers in groups:
        if numbers is None:
            parts.append(prefix)
        elif len(numbers) == 1:
            parts.append(prefix + numbers[0])
        else:
            ranges: list[list[str]] = []
            for number in numbers:
                last = ranges[-1][1] if ranges else None
                if last is not None and int(number) == int(last) + 1 and len(number) == len(last):
                    ranges[-1][1] = number
                else:
                    ranges.append([number, number])
            parts.append(prefix + "[" + ",".join(a if a == b else f"{a}-{b}"
                                                 for a, b in ranges) + "]")
    return ",".join(parts)


def expand_counts(spec: str) -> list[int]:
    """`2(x3),1` -> [2, 2, 2, 1]."""
    counts = []
    for item in spec.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item.strip())
        if not match:
            raise ValueError(spec)
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


def compress_counts(counts: list[int]) -> str:
    """[2, 2, 1] -> `2(x2),1`."""
    runs: list[list[int]] = []
    for count in counts:
        if runs and runs[-1][0] == count:
            runs[-1][1] += 1
        else:
            runs.append([count, 1])
    return ",".join(str(c) if n == 1 else f"{c}(x{n})" for c, n in runs)


# ------------------------------------------------------------------------------------------ jobs

@dataclass
class Job:
    id: str
    state: str = "RUNNING"
    end_time: str = "N/A"
    name: str = "interactive"
    nodes: tuple[str, ...] = ()
    cpus: tuple[int, ...] = ()

    @property
    def ended(self) -> bool:
        return self.state in FINAL_STATES


def job_table() -> dict[str, dict]:
    path = state_dir() / "jobs.json"
    return json.loads(path.read_text()) if path.exists() else {}


def find_job(job_id: str) -> Job | None:
    """The job as slurmctld knows it, or None when it does not (never existed or purged)."""
    table = job_table()
    own = os.environ.get("FAKE_SLURM_JOB_ID")
    if job_id == own:
        if (state_dir() / "ended").exists():
            return None
        entry = table.get(job_id, {})
        nodes, cpus = allocation(entry)
        return Job(job_id, state=entry.get("state", "RUNNING"),
                   end_time=entry.get("end_time", "N/A"),
                   name=entry.get("name", os.environ.get("SLURM_JOB_NAME", "interactive")),
                   nodes=tuple(nodes), cpus=tuple(cpus))
    if job_id in table:
        entry = table[job_id]
        return Job(job_id, state=entry.get("state", "PENDING"),
                   end_time=entry.get("end_time", "N/A"), name=entry.get("name", "dask-worker"))
    return None


def allocation(entry: dict) -> tuple[list[str], list[int]]:
    """The allocation's nodes and CPUs per node: jobs.json, else the job's SLURM_* variables."""
    env_list = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
    if not env_list:
        sys.exit("fake slurm: SLURM_JOB_NODELIST is not set")
    env_nodes = expand_hostlist(env_list)
    if os.environ.get("SLURM_JOB_CPUS_PER_NODE"):
        env_cpus = expand_counts(os.environ["SLURM_JOB_CPUS_PER_NODE"])
    else:
        env_cpus = [int(os.environ.get("SLURM_CPUS_ON_NODE", "1"))] * len(env_nodes)
    if len(env_cpus) != len(env_nodes):
        sys.exit(f"fake slurm: SLURM_JOB_CPUS_PER_NODE={env_cpus} does not match the "
                 f"{len(env_nodes)} nodes of SLURM_JOB_NODELIST={env_list}")
    cpus_of = dict(zip(env_nodes, env_cpus, strict=True))
    nodes = expand_hostlist(entry["nodelist"]) if entry.get("nodelist") else env_nodes
    if entry.get("cpus_per_node"):
        cpus = expand_counts(entry["cpus_per_node"])
    else:
        cpus = [cpus_of.get(node, env_cpus[0]) for node in nodes]
    return nodes, cpus


# ----------------------------------------------------------------------------------------- steps

def next_step_id(job: str) -> int:
    counter = state_dir() / f"{job}.counter"
    with open(counter, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        value = int(handle.read() or 0)
        handle.seek(0)
        handle.truncate()
        handle.write(str(value + 1))
    return value


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def live_steps(job: str) -> list[dict]:
    steps = []
    for path in sorted((state_dir() / "steps").glob(f"{job}.*.json")):
        try:
            step = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if pid_alive(step["pid"]):
            steps.append(step)
        else:
            path.unlink(missing_ok=True)
    return steps


# ------------------------------------------------------------------------------------------ srun

class Refused(Exception):
    """srun stops before any task runs; the message lines are what it printed."""

    def __init__(self, *lines: str):
        super().__init__("\n".join(lines))
        self.lines = lines


def positive(option: str, value: str) -> int:
    # parse_int(..., positive=true) in src/common/proc_args.c
    if not re.fullmatch(r"\d+", value) or int(value) <= 0:
        raise Refused(f'srun: error: Invalid numeric value "{value}" for {option}.')
    return int(value)


def node_count(value: str) -> int:
    # verify_node_count in src/common/proc_args.c; a range (MIN-MAX) is not something we send
    if not re.fullmatch(r"\d+", value):
        raise Refused(f'srun: error: "{value}" is not a valid node count')
    if int(value) == 0:
        raise Refused("fake srun: --nodes=0 leaves the node count to Slurm; "
                      "dasklaunch must say how many nodes it wants")
    return int(value)


def place_step(args: argparse.Namespace, cpus_per_task: int) -> tuple[Job, list[str], list[int]]:
    """Check the request like srun and slurmctld do; return the job, the step's nodes and the
    number of tasks on each, or raise Refused."""
    ntasks = positive("--ntasks", args.ntasks)
    nnodes = node_count(args.nodes)
    per_node = positive("--ntasks-per-node", args.ntasks_per_node) if args.ntasks_per_node \
        else None
    wanted: list[str] = []
    if args.nodelist is not None:
        try:
            wanted = list(dict.fromkeys(expand_hostlist(args.nodelist)))  # hostlist_uniq
        except ValueError:
            raise Refused(f"fake srun: --nodelist={args.nodelist} is not a Slurm host list"
                          ) from None
    min_nodes = max(nnodes, len(wanted))
    # _opt_verify: srun rewrites these layouts after a warning; we refuse them
    if ntasks < min_nodes:
        raise Refused(f"srun: Warning: can't run {ntasks} processes on {min_nodes} nodes, "
                      f"setting nnodes to {ntasks}",
                      "fake srun: refusing a layout srun would change (--ntasks < --nodes)")
    if per_node is not None and per_node * min_nodes != ntasks:
        lines = ["fake srun: refusing a layout srun would change "
                 "(--ntasks-per-node x --nodes != --ntasks)"]
        if per_node != ntasks // min_nodes and ntasks > per_node:  # when srun says so
            lines.insert(0, f"srun: Warning: can't honor --ntasks-per-node set to {per_node} "
                            f"which doesn't match the requested tasks {ntasks} with the number "
                            f"of requested nodes {min_nodes}. Ignoring --ntasks-per-node.")
        raise Refused(*lines)
    # existing_allocation (src/srun/libsrun/allocate.c)
    job = find_job(args.jobid)
    if job is None or job.ended:
        first = (f"srun: error: Slurm job {args.jobid} has expired" if job else
                 f"srun: error: Unable to confirm allocation for job {args.jobid}: "
                 "Invalid job id specified")
        raise Refused(first, "srun: Check SLURM_JOB_ID environment variable. "
                             f"Expired or invalid job {args.jobid}")
    # _job_create_structure (src/srun/libsrun/srun_job.c)
    if min_nodes > len(job.nodes):
        raise Refused(f"srun: error: Only allocated {len(job.nodes)} nodes asked for {min_nodes}")
    # _pick_step_nodes (src/slurmctld/step_mgr.c)
    unavailable = Refused(f"srun: error: Unable to create step for job {job.id}: "
                          "Requested node configuration is not available")
    if not set(wanted) <= set(job.nodes) or len(wanted) > nnodes:
        raise unavailable
    others = [node for node in job.nodes if node not in wanted]
    chosen = set(wanted) | set(others[: nnodes - len(wanted)])
    nodes = [node for node in job.nodes if node in chosen]
    cpus = [job.cpus[job.nodes.index(node)] for node in nodes]
    if ntasks * cpus_per_task > sum(cpus):
        if len(set(job.cpus)) == 1:
            raise Refused(f"srun: error: Unable to create step for job {job.id}: "
                          "More processors requested than permitted")
        raise unavailable
    if per_node is not None and any(per_node * cpus_per_task > c for c in cpus):
        raise unavailable
    return job, nodes, block_layout(ntasks, cpus, cpus_per_task, per_node)


def block_layout(ntasks: int, cpus: list[int], cpus_per_task: int,
                 per_node: int | None) -> list[int]:
    """Tasks per node, as _task_layout_block (src/common/slurm_step_layout.c) counts them."""
    room = [max(1, c // cpus_per_task) for c in cpus]
    if per_node is not None:
        room = [min(r, per_node) for r in room]
    tasks = [0] * len(cpus)
    placed, depth, over = 0, 0, False
    while placed < ntasks:
        space_left = False
        for i in range(len(cpus)):
            if placed < ntasks and (depth < room[i] or over):
                tasks[i] += 1
                placed += 1
                space_left = space_left or depth + 1 < room[i]
        over = over or not space_left
        depth += 1
    return tasks


def task_envs(job: Job, step_id: int, nodes: list[str], tasks: list[int]) -> list[dict]:
    step = {
        "SLURM_JOB_ID": job.id, "SLURM_JOBID": job.id,
        "SLURM_STEP_ID": str(step_id), "SLURM_STEPID": str(step_id),
        "SLURM_STEP_NODELIST": compress_hostlist(nodes),
        "SLURM_STEP_NUM_NODES": str(len(nodes)), "SLURM_NNODES": str(len(nodes)),
        "SLURM_STEP_NUM_TASKS": str(sum(tasks)), "SLURM_NTASKS": str(sum(tasks)),
        "SLURM_NPROCS": str(sum(tasks)),
        "SLURM_STEP_TASKS_PER_NODE": compress_counts(tasks),
        "SLURM_TASKS_PER_NODE": compress_counts(tasks),
    }
    envs, rank = [], 0
    for node_id, (node, count) in enumerate(zip(nodes, tasks, strict=True)):
        ranks = list(range(rank, rank + count))
        for local_id, task_rank in enumerate(ranks):
            envs.append(dict(step, SLURM_PROCID=str(task_rank), SLURM_LOCALID=str(local_id),
                             SLURM_NODEID=str(node_id), SLURMD_NODENAME=node,
                             SLURM_TOPOLOGY_ADDR=node,
                             SLURM_CPUS_ON_NODE=str(job.cpus[job.nodes.index(node)]),
                             SLURM_GTIDS=",".join(map(str, ranks))))
        rank += count
    return envs


def srun(argv: list[str]) -> int:
    if argv in (["--version"], ["-V"]):
        # FAKE_SLURM_VERSION: the version to claim, for tests of dasklaunch's version check
        print(f"slurm {os.environ.get('FAKE_SLURM_VERSION', SLURM_VERSION)}")
        return 0
    parser = argparse.ArgumentParser(prog="srun", exit_on_error=False)
    parser.add_argument("--jobid", required=True)
    parser.add_argument("--job-name", required=True)
    parser.add_argument("--overlap", action="store_true", required=True)
    parser.add_argument("--nodes", required=True)
    parser.add_argument("--ntasks", required=True)
    parser.add_argument("--ntasks-per-node")
    parser.add_argument("--nodelist")
    parser.add_argument("--kill-on-bad-exit", type=int, choices=[0, 1], required=True)
    parser.add_argument("--no-kill", action="store_true")
    parser.add_argument("--cpus-per-task", type=int)
    parser.add_argument("--gpus-per-node", type=int)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if not args.command:
        parser.error("no command")
    # srun 22.05 no longer reads SLURM_CPUS_PER_TASK; SRUN_CPUS_PER_TASK is its input variable
    cpus_per_task = args.cpus_per_task or int(os.environ.get("SRUN_CPUS_PER_TASK") or 1)
    try:
        job, nodes, tasks = place_step(args, cpus_per_task)
    except Refused as refusal:
        for line in refusal.lines:
            say(line)
        return 1
    step_id = next_step_id(job.id)
    full_id = f"{job.id}.{step_id}"
    record = state_dir() / "steps" / f"{full_id}.json"
    record.write_text(json.dumps({"id": full_id, "name": args.job_name, "pid": os.getpid(),
                                  "pgid": os.getpgid(0), "nodes": nodes, "tasks": tasks}))
    children = []
    for task_env in task_envs(job, step_id, nodes, tasks):
        env = dict(os.environ, **task_env)
        children.append(subprocess.Popen(args.command, env=env, stdin=subprocess.DEVNULL))

    def on_term(signum, _frame):
        # like Slurm 22.05: a TERM to srun itself kills the tasks at once
        for child in children:
            if child.poll() is None:
                child.kill()

    signal.signal(signal.SIGTERM, on_term)
    codes = [child.wait() for child in children]
    record.unlink(missing_ok=True)
    return max((c if c >= 0 else 128 - c) for c in codes)


# --------------------------------------------------------------------------------------- scancel

def scancel(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scancel", exit_on_error=False)
    parser.add_argument("--signal", choices=["TERM", "INT", "KILL"])
    parser.add_argument("id")
    args = parser.parse_args(argv)
    job, _, step = args.id.partition(".")
    targets = [s for s in live_steps(job) if not step or s["id"] == args.id]
    if not targets:
        print(f"scancel: error: Kill job error on job id {args.id}: Invalid job id specified",
              file=sys.stderr)
        return 1
    sig = getattr(signal, f"SIG{args.signal or 'KILL'}")
    for target in targets:
        # Like slurmstepd: every process of the step's tasks, but not srun itself.
        for pid in group_pids(target["pgid"]):
            if pid != target["pid"]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
    return 0


# ---------------------------------------------------------------------------------------- squeue

JOB_FIELDS = {"i": lambda job: job.id, "j": lambda job: job.name, "T": lambda job: job.state,
              "e": lambda job: job.end_time,
              "r": lambda job: "None" if job.state == "RUNNING" else "Resources"}
STEP_FIELDS = {"i": lambda step: step["id"], "j": lambda step: step["name"]}


def parse_format(fmt: str, fields: dict) -> list:
    """`%i %T` -> [field, " ", field]; only the fields we model, without widths."""
    parts, pos = [], 0
    for match in re.finditer(r"%(.?)", fmt):
        parts.append(fmt[pos:match.start()])
        if match.group(1) not in fields:
            raise argparse.ArgumentError(None, f"unsupported squeue format field {match.group()!r}"
                                               f" in {fmt!r}")
        parts.append(fields[match.group(1)])
        pos = match.end()
    parts.append(fmt[pos:])
    return [p for p in parts if p != ""]


def render(parts: list, item) -> str:
    return "".join(p if isinstance(p, str) else p(item) for p in parts)


def squeue(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="squeue", exit_on_error=False)
    parser.add_argument("--noheader", action="store_true", required=True)
    parser.add_argument("--steps", action="store_true")
    parser.add_argument("--jobs", required=True)
    parser.add_argument("--format", required=True)
    args = parser.parse_args(argv)
    parts = parse_format(args.format, STEP_FIELDS if args.steps else JOB_FIELDS)
    ids = args.jobs.split(",")
    if not all(re.fullmatch(r"\d+", i) for i in ids):
        raise argparse.ArgumentError(None, f"unsupported job list {args.jobs!r}")
    jobs = [job for job in map(find_job, ids) if job is not None]
    if args.steps:
        # all steps are loaded, then filtered: no error for a job that is gone
        for job in jobs:
            if job.state == "RUNNING":
                print(render(parts, {"id": f"{job.id}.extern", "name": "extern"}))
                for step in live_steps(job.id):
                    print(render(parts, step))
        return 0
    if len(ids) == 1 and not jobs:
        # one job asked for: slurm_load_job, which fails for an unknown job
        say("slurm_load_jobs error: Invalid job id specified")
        return 1
    for job in jobs:
        if not job.ended:  # without --states, squeue hides finished jobs
            print(render(parts, job))
    return 0


# -------------------------------------------------------------------------------------- scontrol

def scontrol(argv: list[str]) -> int:
    if argv[:3] == ["show", "job", "--oneliner"] and len(argv) == 4:
        job = find_job(argv[3])
        if job is None:
            say("slurm_load_jobs error: Invalid job id specified")
            return 1
        fields = [f"JobId={job.id}", f"JobName={job.name}", f"JobState={job.state}",
                  f"EndTime={'Unknown' if job.end_time == 'N/A' else job.end_time}"]
        if job.nodes:
            fields += [f"NodeList={compress_hostlist(list(job.nodes))}",
                       f"NumNodes={len(job.nodes)}", f"NumCPUs={sum(job.cpus)}"]
        else:
            fields += ["NodeList=(null)", "NumNodes=1"]
        print(" ".join(fields))
        return 0
    if argv[:2] != ["show", "hostnames"] or len(argv) > 3:
        print(f"fake scontrol: unsupported {argv}", file=sys.stderr)
        return 2
    # scontrol_print_hosts (src/scontrol/info_job.c): without a list, $SLURM_NODELIST; the
    # errors go to stderr but leave the exit code 0
    expr = argv[2] if len(argv) == 3 else os.environ.get("SLURM_NODELIST")
    if not expr:
        say("scontrol: error: host list is empty")
        return 0
    try:
        hosts = expand_hostlist(expr)
    except ValueError:
        say(f"Invalid hostlist: {expr}")
        return 0
    for host in hosts:
        print(host)
    return 0


TOOLS = {"srun": srun, "scancel": scancel, "squeue": squeue, "scontrol": scontrol}


def main() -> int:
    tool = Path(sys.argv[0]).name
    log_call(tool, sys.argv[1:])
    try:
        return TOOLS[tool](sys.argv[1:])
    except (argparse.ArgumentError, SystemExit) as err:
        if isinstance(err, SystemExit) and err.code in (0, None):
            raise
        print(f"fake {tool}: rejected arguments {sys.argv[1:]}: {err}", file=sys.stderr)
        return 99


if __name__ == "__main__":
    sys.exit(main())
