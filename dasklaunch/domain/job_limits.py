"""Pure: the user's Slurm limits (associations and QOS, as `sacctmgr` lists them), the jobs that
count against each, and how many more jobs of a given shape fit under all of them.

dask-jobqueue's adaptive mode ignores these limits (its #365) and keeps submitting jobs that
Slurm refuses or holds forever. Here `scale`, `adapt` and `scale-out` ask `headroom` first.

What counts against a limit: see `_counts`. GrpTRES and MaxTRESPU count the CPUs and nodes
the jobs asked for. A per-job MaxTRES smaller than one job leaves no room at all (Slurm would
hold the job forever).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# sacctmgr's column names, in the order slurm/commands.py asks for them
QOS_FIELDS = ("Name", "MaxJobsPU", "MaxSubmitPU", "MaxTRESPU", "GrpJobs", "GrpSubmit",
              "GrpTRES", "MaxTRES")
ASSOC_FIELDS = ("Cluster", "Account", "User", "Partition", "QOS", "DefaultQOS", "MaxJobs",
                "MaxSubmit", "GrpJobs", "GrpSubmit", "GrpTRES", "MaxTRES")
# squeue: what a live job counts for
QUEUE_FORMAT = "%i|%u|%q|%a|%C|%D|%T"

TRES_COUNTED = {"cpu": "CPUs", "node": "nodes"}


@dataclass(frozen=True)
class Limit:
    holder: str            # "QOS normal", "association root (account root)"
    what: str              # "jobs", "submitted jobs", "CPUs", "nodes"
    value: int
    qos: str | None = None         # scope: jobs in this QOS ...
    account: str | None = None     # ... or in this account ...
    user: str | None = None        # ... of this user (None: of every user)
    per_job: bool = False          # MaxTRES: the value bounds one job, not a sum

    def describe(self) -> str:
        whose = f" for {self.user}" if self.user else ""
        kind = "per job" if self.per_job else "at once"
        what = self.what[:-1] if self.value == 1 else self.what
        return f"{self.holder} allows {self.value} {what} {kind}{whose}"


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    user: str
    qos: str
    account: str
    cpus: int
    nodes: int
    state: str


@dataclass(frozen=True)
class Room:
    """How many more jobs fit (None: no limit applies) and the limit that decides it."""
    jobs: int | None
    limit: Limit | None = None
    used: int = 0           # what the deciding limit already counts

    def line(self, action: str, wanted: int) -> str:
        """The one line a request that meets the limit prints."""
        asked = f"{action} wants {wanted} more {'job' if wanted == 1 else 'jobs'}"
        if self.limit is None or self.jobs is None:
            return asked
        if self.limit.per_job:
            return f"{asked}; {self.limit.describe()}: none can run"
        return f"{asked}; {self.limit.describe()} ({self.used} in use): {self.jobs} fit"


# ------------------------------------------------------------------------------------ parsing

def parse_tres(text: str) -> dict[str, int]:
    """{"cpu": 10, "node": 2} from "cpu=10,node=2,mem=4G" (only the counted kinds)."""
    out = {}
    for part in (text or "").split(","):
        name, _, value = part.partition("=")
        if name in TRES_COUNTED and value.isdigit():
            out[name] = int(value)
    return out


def _number(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None


def _rows(output: str, fields: Sequence[str]) -> list[dict[str, str]]:
    rows = []
    for line in output.splitlines():
        cells = line.split("|")
        if len(cells) >= len(fields):
            rows.append(dict(zip(fields, (c.strip() for c in cells), strict=False)))
    return rows


def parse_queue(output: str) -> list[QueuedJob]:
    jobs = []
    for line in output.splitlines():
        cells = line.strip().split("|")
        if len(cells) != 7:
            continue
        job_id, user, qos, account, cpus, nodes, state = cells
        jobs.append(QueuedJob(job_id, user, qos.lower(), account.lower(), _number(cpus) or 0,
                              _number(nodes) or 0, state))
    return jobs


def _job_limits(holder: str, row: dict[str, str], counts: Iterable[tuple[str, str, bool]], *,
                user: str, qos: str | None = None, account: str | None = None) -> list[Limit]:
    """Limits from a row's job-count columns: (column, what, per user)."""
    out = []
    for column, what, per_user in counts:
        value = _number(row.get(column, ""))
        if value is not None:
            out.append(Limit(holder, what, value, qos=qos, account=account,
                             user=user if per_user else None))
    return out


def _tres_limits(holder: str, text: str, *, user: str, per_user: bool, per_job: bool = False,
                 qos: str | None = None, account: str | None = None) -> list[Limit]:
    return [Limit(holder, TRES_COUNTED[name], value, qos=qos, account=account,
                  user=user if per_user else None, per_job=per_job)
            for name, value in parse_tres(text).items()]


def job_qos_and_account(job_options: Sequence[str]) -> tuple[str | None, str | None]:
    """The --qos and --account a job's sbatch options ask for (None: the defaults). Options
    come as dask-jobqueue users write them: one per item ("--qos=x", "--qos x", "-q x", "-qx",
    "#SBATCH -A x") or split over two items ("-A", "x")."""
    tokens = []
    for item in job_options:
        text = re.sub(r"^#SBATCH\s+", "", str(item).strip())
        try:
            tokens += shlex.split(text)
        except ValueError:   # an unbalanced quote: sbatch would refuse it anyway
            tokens += text.split()
    found: dict[str, str] = {}
    for i, token in enumerate(tokens):
        for key, long, short in (("qos", "--qos", "-q"), ("account", "--account", "-A")):
            value = None
            if token.startswith(long + "="):
                value = token[len(long) + 1:]
            elif token in (long, short) and i + 1 < len(tokens):
                value = tokens[i + 1]
            elif token.startswith(short) and not token.startswith("--") and len(token) > 2:
                value = token[2:]
            if value and value.strip():
                found[key] = value.strip().lower()   # Slurm keeps these names in lower case
    return found.get("qos"), found.get("account")


def user_limits(user: str, assoc_output: str, qos_output: str, *,
                default_account: str | None, qos: str | None = None,
                account: str | None = None) -> list[Limit]:
    """Every limit a job of `user` (in `account`, `qos`, or their defaults) meets. A per-user
    or per-job limit the job's QOS sets overrides the association's of the same kind, as
    Slurm applies them (QOS first); group limits all apply."""
    rows = _rows(assoc_output, ASSOC_FIELDS)
    mine = [r for r in rows if r["User"] == user and not r["Partition"]]
    account = (account or default_account or (mine[0]["Account"] if mine else "")).lower()
    assoc = next((r for r in mine if r["Account"].lower() == account), None)
    if qos is None and assoc is not None:
        allowed = [q for q in assoc["QOS"].lower().split(",") if q]
        qos = assoc["DefaultQOS"].lower() or (allowed[0] if len(allowed) == 1 else "normal")
    qos = (qos or "normal").lower()
    limits: list[Limit] = []
    for row in _rows(qos_output, QOS_FIELDS):
        if row["Name"].lower() != qos:
            continue
        holder = f"QOS {qos}"
        limits += _job_limits(holder, row, (("MaxJobsPU", "jobs", True),
                                            ("MaxSubmitPU", "submitted jobs", True),
                                            ("GrpJobs", "jobs", False),
                                            ("GrpSubmit", "submitted jobs", False)),
                              qos=qos, user=user)
        limits += _tres_limits(holder, row["MaxTRESPU"], per_user=True, qos=qos, user=user)
        limits += _tres_limits(holder, row["GrpTRES"], per_user=False, qos=qos, user=user)
        limits += _tres_limits(holder, row["MaxTRES"], per_user=False, per_job=True, qos=qos,
                               user=user)
    if assoc is not None:
        holder = f"association {user} (account {account})"
        scope = {"account": account, "user": user}
        by_qos = {(limit.what, limit.per_job) for limit in limits if limit.user or limit.per_job}
        own = _job_limits(holder, assoc, (("MaxJobs", "jobs", True),
                                          ("MaxSubmit", "submitted jobs", True)), **scope)
        own += _tres_limits(holder, assoc["MaxTRES"], per_user=True, per_job=True, **scope)
        limits += [limit for limit in own if (limit.what, limit.per_job) not in by_qos]
        limits += _job_limits(holder, assoc, (("GrpJobs", "jobs", True),
                                              ("GrpSubmit", "submitted jobs", True)), **scope)
        limits += _tres_limits(holder, assoc["GrpTRES"], per_user=True, **scope)
    return limits


# -------------------------------------------------------------------------------------- room

RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED"})


def _counts(limit: Limit, job: QueuedJob) -> bool:
    """Whether `job` counts against `limit`. Submit limits count every job not ended. So do
    the user's own running limits: a pending job of the user only waits for a running one, so
    planning past them gains nothing. Group limits on running jobs count running jobs only:
    other users' pending jobs may never run."""
    if limit.user is None and limit.what != "submitted jobs" and job.state not in RUNNING_STATES:
        return False
    return ((limit.qos is None or job.qos == limit.qos)
            and (limit.account is None or job.account == limit.account)
            and (limit.user is None or job.user == limit.user))


def _cost(limit: Limit, cpus: int, nodes: int) -> int:
    return {"CPUs": cpus, "nodes": nodes}.get(limit.what, 1)


def headroom(limits: Iterable[Limit], live: Iterable[QueuedJob], *, cpus: int,
             nodes: int = 1) -> Room:
    """How many more jobs of `cpus` CPUs on `nodes` nodes fit under every limit, given the
    jobs Slurm lists now; the tightest limit decides."""
    live = list(live)
    best = Room(None)
    for limit in limits:
        cost = max(1, _cost(limit, cpus, nodes))
        if limit.per_job:
            if cost > limit.value:
                return Room(0, limit, 0)
            continue
        used = sum(_cost(limit, j.cpus, j.nodes) for j in live if _counts(limit, j))
        fits = max(0, (limit.value - used) // cost)
        if best.jobs is None or fits < best.jobs:
            best = Room(fits, limit, used)
    return best


def parse_cluster_name(config: str) -> str | None:
    match = re.search(r"^ClusterName\s*=\s*(\S+)", config, re.MULTILINE)
    return match.group(1) if match else None
