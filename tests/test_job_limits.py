"""The user's Slurm limits (domain/job_limits.py): parsed from sacctmgr's own output, and never
planned past, whatever the limits and the queue hold."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dasklaunch.domain import job_limits as jl

# as the testbed's sacctmgr (22.05, 24.11, 26.05) prints them, with the limits the tests set
QOS = "normal|2|5|||||\nhigh||||3||cpu=10,mem=4G|node=1\n"
ASSOC = ("dltestbed|root|||normal|||||||\n"
         "dltestbed|root|root||normal,high|normal|4||||cpu=6|\n"
         "dltestbed|science|root||normal||1|||||\n")


def test_limits_of_the_default_account_and_qos():
    limits = jl.user_limits("root", ASSOC, QOS, default_account="root")
    said = {limit.describe() for limit in limits}
    # the QOS's MaxJobsPU (2) overrides the association's MaxJobs (4): Slurm looks at the QOS
    # first; the association's GrpTRES applies as well
    assert said == {"association root (account root) allows 6 CPUs at once for root",
                    "QOS normal allows 2 jobs at once for root",
                    "QOS normal allows 5 submitted jobs at once for root"}


def test_a_job_asking_for_another_qos_and_account_meets_their_limits():
    qos, account = jl.job_qos_and_account(["--time=10", "--qos=high", "-A", "science"])
    assert (qos, account) == ("high", "science")
    limits = jl.user_limits("root", ASSOC, QOS, default_account="root", qos=qos,
                            account=account)
    said = {limit.describe() for limit in limits}
    assert said == {"association root (account science) allows 1 job at once for root",
                    "QOS high allows 3 jobs at once", "QOS high allows 10 CPUs at once",
                    "QOS high allows 1 node per job"}


def test_qos_and_account_spellings():
    assert jl.job_qos_and_account(["-qlow", "--account=x"]) == ("low", "x")
    assert jl.job_qos_and_account(["#SBATCH --qos=debug", "-Aproj"]) == ("debug", "proj")
    assert jl.job_qos_and_account(["--qos normal", "-A acct"]) == ("normal", "acct")
    assert jl.job_qos_and_account(["-q", "High", "--account", "Science"]) == ("high", "science")
    assert jl.job_qos_and_account(["-Axyz --qos=z"]) == ("z", "xyz")
    assert jl.job_qos_and_account(["--partition=a", "--exclusive"]) == (None, None)


def test_group_limits_count_only_running_jobs_but_the_users_own_count_pending_too():
    group = jl.Limit("QOS normal", "jobs", 2, qos="normal")
    own = jl.Limit("QOS normal", "jobs", 2, qos="normal", user="root")
    submit = jl.Limit("QOS normal", "submitted jobs", 2, qos="normal")
    live = jl.parse_queue("1|alice|normal|x|1|1|PENDING\n2|alice|normal|x|1|1|PENDING\n"
                          "3|root|normal|x|1|1|PENDING\n")
    assert jl.headroom([group], live, cpus=1).jobs == 2
    assert jl.headroom([own], live, cpus=1).jobs == 1
    assert jl.headroom([submit], live, cpus=1).jobs == 0


def test_no_accounting_no_limits():
    assert jl.user_limits("root", "", "", default_account=None) == []
    assert jl.headroom([], [], cpus=4).jobs is None


def test_queue_parsing_and_the_line():
    live = jl.parse_queue("7|root|normal|root|1|1|RUNNING\n8|root|normal|root|1|1|PENDING\n"
                          "9|alice|normal|root|4|1|RUNNING\nnot a line\n")
    assert [j.job_id for j in live] == ["7", "8", "9"]
    limits = jl.user_limits("root", ASSOC, QOS, default_account="root")
    room = jl.headroom(limits, live, cpus=1)
    assert (room.jobs, room.used) == (0, 2)
    assert room.line("adapt", 4) == ("adapt wants 4 more jobs; QOS normal allows 2 jobs at "
                                     "once for root (2 in use): 0 fit")


def test_a_job_larger_than_a_per_job_limit_never_fits():
    limits = jl.user_limits("root", ASSOC, QOS, default_account="root", qos="high")
    room = jl.headroom(limits, [], cpus=1, nodes=2)
    assert room.jobs == 0 and room.limit.per_job
    assert room.line("scale", 1).endswith("allows 1 node per job: none can run")


users = st.sampled_from(["root", "alice"])
qoses = st.sampled_from(["normal", "high"])
accounts = st.sampled_from(["root", "science"])
jobs = st.builds(jl.QueuedJob, job_id=st.integers(1, 999).map(str), user=users, qos=qoses,
                 account=accounts, cpus=st.integers(1, 8), nodes=st.integers(1, 3),
                 state=st.sampled_from(["RUNNING", "PENDING"]))
limits = st.builds(jl.Limit, holder=st.just("QOS normal"),
                   what=st.sampled_from(["jobs", "submitted jobs", "CPUs", "nodes"]),
                   value=st.integers(0, 20), qos=st.none() | qoses,
                   account=st.none() | accounts, user=st.none() | users,
                   per_job=st.booleans())


def _used(limit, live, extra, cpus, nodes):
    cost = {"CPUs": cpus, "nodes": nodes}.get(limit.what, 1)
    running_only = limit.user is None and limit.what != "submitted jobs"
    mine = [j for j in live if (limit.qos in (None, j.qos) and limit.account in (None, j.account)
                                and limit.user in (None, j.user)
                                and not (running_only and j.state == "PENDING"))]
    own = sum({"CPUs": j.cpus, "nodes": j.nodes}.get(limit.what, 1) for j in mine)
    return own + extra * cost, cost


@given(st.lists(limits, max_size=5), st.lists(jobs, max_size=12), st.integers(1, 8),
       st.integers(1, 3))
def test_what_fits_stays_under_every_limit_and_one_more_would_not(found, live, cpus, nodes):
    # the new jobs are root's, in QOS normal, account root: scope them so, as Slurm would
    found = [jl.Limit(f.holder, f.what, f.value, f.qos and "normal", f.account and "root",
                      f.user and "root", f.per_job) for f in found]
    room = jl.headroom(found, live, cpus=cpus, nodes=nodes)
    if room.jobs is None:
        assert all(f.per_job for f in found)
        return
    for limit in found:
        used, cost = _used(limit, live, room.jobs, cpus, nodes)
        if limit.per_job:
            assert room.jobs == 0 or cost <= limit.value
        elif room.jobs:
            assert used <= limit.value          # never planned past any limit
    decider = room.limit
    used, cost = _used(decider, live, room.jobs + 1, cpus, nodes)
    assert decider.per_job or used > decider.value   # and the deciding one is really full


def test_the_cluster_caps_at_the_room_and_says_so_once_per_change(monkeypatch):
    from dasklaunch.deploy.adaptive_jobs import JobScaling
    from dasklaunch.slurm import accounting

    limit = jl.Limit("QOS normal", "jobs", 2, qos="normal", user="root")
    reads, rooms = [], iter([1, 1, 0, 5])
    monkeypatch.setattr(accounting, "limits", lambda options: reads.append(options) or [limit])
    monkeypatch.setattr(accounting, "room",
                        lambda found, cpus: jl.Room(next(rooms), limit, 1))
    scaler, said = JobScaling(), []
    scaler._job_spec = {"cores": 1, "job_options": ["--qos=normal"]}
    scaler._log = said.append
    assert [scaler._within_limits(4, "adapt") for _ in range(4)] == [1, 1, 0, 4]
    assert reads == [["--qos=normal"]]          # read once
    assert said == ["adapt wants 4 more jobs; QOS normal allows 2 jobs at once for root "
                    "(1 in use): 1 fit",
                    "adapt wants 4 more jobs; QOS normal allows 2 jobs at once for root "
                    "(1 in use): 0 fit"]


def test_scale_out_refuses_before_submitting(monkeypatch):
    import pytest

    from dasklaunch.errors import LimitError
    from dasklaunch.ops import scale_out
    from dasklaunch.slurm import accounting

    limit = jl.Limit("QOS normal", "jobs", 2, qos="normal", user="root")
    monkeypatch.setattr(accounting, "limits", lambda options: [limit])
    monkeypatch.setattr(accounting, "room", lambda found, cpus: jl.Room(1, limit, 1))
    spec = {"cores": 1, "job_options": []}
    scale_out.check_limits(spec, 1)   # what fits goes
    with pytest.raises(LimitError, match=r"^scale-out wants 3 more jobs; QOS normal allows 2 "
                                         r"jobs at once for root \(1 in use\): 1 fit$"):
        scale_out.check_limits(spec, 3)
    monkeypatch.setattr(accounting, "room", lambda found, cpus: jl.Room(None))
    scale_out.check_limits(spec, 50)  # no accounting here: nothing to honour


def test_limits_read_once_by_the_cluster_are_not_read_again_by_scale_out(monkeypatch):
    from dasklaunch.ops import scale_out
    from dasklaunch.slurm import accounting

    def read_again(options):
        raise AssertionError("scale-out read the limits again")

    seen = []
    monkeypatch.setattr(accounting, "limits", read_again)
    monkeypatch.setattr(accounting, "room",
                        lambda found, cpus: seen.append(found) or jl.Room(None))
    limit = jl.Limit("QOS normal", "jobs", 2, qos="normal", user="root")
    scale_out.check_limits({"cores": 1, "job_options": []}, 1, [limit])
    scale_out.check_limits({"cores": 1, "job_options": []}, 1, [])
    assert seen == [[limit], []]
