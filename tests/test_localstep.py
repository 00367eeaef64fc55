"""The local step leader (`dasklaunch.launch.localstep`) and how the local launcher stops it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dasklaunch.domain.step_plan import StepPlan
from dasklaunch.launch.local import LocalLauncher
from dasklaunch.runtime import proc

# Each task blocks SIGTERM and collects who sent each one, for a while after the first.
TASK = """
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
open(sys.argv[1] + f".{os.environ['SLURM_PROCID']}.ready", "w").close()
senders = [signal.sigwaitinfo({signal.SIGTERM}).si_pid]
while (info := signal.sigtimedwait({signal.SIGTERM}, 1.5)) is not None:
    senders.append(info.si_pid)
with open(sys.argv[1] + f".{os.environ['SLURM_PROCID']}", "w") as out:
    out.write(" ".join(map(str, [os.getppid(), *senders])))
"""


def test_a_graceful_stop_reaches_each_task_once_through_the_leader(tmp_path):
    """`dask worker` restores the default SIGTERM handler when it gets the first one, so a
    second SIGTERM (the group's, then the leader's copy) could kill it before its nanny has
    closed; under load that happens. Each task must get SIGTERM once, from its leader, as
    srun's tasks do."""
    out = tmp_path / "sig"
    plan = StepPlan(role="workers", name="dl-workers1-t", placement="tasks", ntasks=2, nnodes=1,
                    command=(sys.executable, "-c", TASK, str(out)),
                    log=str(tmp_path / "step.log"))
    launcher = LocalLauncher("local-test")
    step = launcher.start(plan)
    try:
        assert proc.wait_until(lambda: all(os.path.exists(f"{out}.{r}.ready") for r in (0, 1)),
                               30)
        assert launcher.stop(step, grace=20) == "stopped"
    finally:
        launcher.kill(step)
    for rank in (0, 1):
        leader, *senders = Path(f"{out}.{rank}").read_text().split()
        assert senders == [leader], (rank, (tmp_path / "step.log").read_text())


def test_tasks_get_their_rank_and_the_step_name(tmp_path):
    plan = StepPlan(role="workers", name="dl-workers1-r", placement="tasks", ntasks=3, nnodes=1,
                    # one write per task (print's pieces, unbuffered, interleave in the shared log)
                    command=(sys.executable, "-c",
                             "import os; e = os.environ; os.write(1, (' '.join(["
                             "e['SLURM_PROCID'], e['SLURM_NTASKS'], e['DASKLAUNCH_STEP']])"
                             " + '\\n').encode())"),
                    log=str(tmp_path / "step.log"))
    launcher = LocalLauncher("local-test")
    step = launcher.start(plan)
    assert proc.wait_until(lambda: not launcher.running(step), 30)
    lines = sorted((tmp_path / "step.log").read_text().split("\n")[:-1])
    assert lines == ["0 3 dl-workers1-r", "1 3 dl-workers1-r", "2 3 dl-workers1-r"]
