"""Where the dashboard can be seen: `up` says when bokeh is missing or too old for it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from procs import outside_any_job

from dasklaunch.domain.settings import UpOptions
from dasklaunch.ops import dashboard_hints as hints
from dasklaunch.runtime.record import ClusterRecord
from dasklaunch.runtime.schedfile import SchedulerInfo
from dasklaunch.runtime.state import StateDir


@pytest.fixture
def cli(cli, tmp_path, monkeypatch):
    """conftest's, with a state dir, and not on a JupyterHub unless a test says so."""
    outside_any_job(monkeypatch, "JUPYTERHUB_")
    monkeypatch.setenv("DASKLAUNCH_STATE_DIR", str(tmp_path / "state"))
    return cli


def fake_bokeh(monkeypatch, tmp_path, version: str | None) -> None:
    """This Python finds bokeh `version` (None: it finds no bokeh at all)."""
    if version is None:
        monkeypatch.setattr(hints, "find_bokeh", lambda: None)
        return
    site = tmp_path / "site-packages"
    (site / "bokeh").mkdir(parents=True)
    (site / "bokeh" / "__init__.py").write_text("")
    (site / f"bokeh-{version}.dist-info").mkdir()
    spec = SimpleNamespace(origin=str(site / "bokeh" / "__init__.py"))
    monkeypatch.setattr(hints, "find_bokeh", lambda: spec)


def dashboard_warnings(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if "dashboard" in line]


def test_up_warns_in_one_line_when_bokeh_is_missing(cli, monkeypatch, tmp_path):
    fake_bokeh(monkeypatch, tmp_path, None)
    result = cli("up", "--dry-run", "--local-tasks", "2")
    assert result.exit_code == 0, result.stderr
    [line] = dashboard_warnings(result)
    assert line.startswith("warning: the dashboard will not be served: bokeh is not installed")
    assert "bokeh>=3.1.0" in line and "[complete]" in line


def test_up_warns_when_bokeh_is_too_old(cli, monkeypatch, tmp_path):
    fake_bokeh(monkeypatch, tmp_path, "2.4.3")
    [line] = dashboard_warnings(cli("up", "--dry-run", "--local-tasks", "2"))
    assert "bokeh 2.4.3 is too old" in line


@pytest.mark.parametrize("version", ["3.1.0", "3.4.1", "10.0.0.dev1"])
def test_no_warning_with_a_bokeh_that_serves_it(cli, monkeypatch, tmp_path, version):
    fake_bokeh(monkeypatch, tmp_path, version)
    result = cli("up", "--dry-run", "--local-tasks", "2")
    assert result.exit_code == 0 and dashboard_warnings(result) == []


def test_no_warning_without_a_dashboard(monkeypatch):
    monkeypatch.setattr(hints, "find_bokeh", lambda: None)
    assert hints.dashboard_problem(UpOptions(scheduler_args=("--no-dashboard",))) is None
    assert hints.dashboard_problem(UpOptions()) is not None


def test_failures_stay_one_line(cli, monkeypatch, tmp_path):
    fake_bokeh(monkeypatch, tmp_path, None)
    result = cli("up", "--dry-run", "--timeout", "0")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1


def test_the_real_finder_agrees_with_the_import_system():
    import importlib.util

    assert (hints.find_bokeh() is None) == (importlib.util.find_spec("bokeh") is None)


# ------------------------------------------------- where a browser sees it, how Python connects

def info(port: int | None = 8787) -> SchedulerInfo:
    return SchedulerInfo(address="tls://10.0.0.5:40000", dashboard_port=port, scheduler_id="x")


HUB = {"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"}


def test_the_local_backend_gives_no_tunnel_to_its_own_machine():
    record = ClusterRecord(job_id="local-vm", backend="local")
    assert hints.dashboard_hints(record, info(), {}) == {"proxy": None, "tunnel": None}
    assert hints.client_dashboard_env("local", {}) == {}


def test_on_a_jupyterhub_the_local_dashboard_goes_through_its_proxy():
    record = ClusterRecord(job_id="local-vm", backend="local")
    assert hints.dashboard_hints(record, info(8790), HUB) == {
        "proxy": "/user/alice/proxy/8790/status", "tunnel": None}
    no_slash = {"JUPYTERHUB_SERVICE_PREFIX": "/user/alice"}
    assert hints.dashboard_hints(record, info(8790), no_slash)["proxy"] == \
        "/user/alice/proxy/8790/status"
    assert hints.client_dashboard_env("local", HUB) == {
        "DASK_DISTRIBUTED__DASHBOARD__LINK": "/user/alice/proxy/{port}/status"}


def test_a_slurm_dashboard_is_tunnelled_from_the_login_node():
    record = ClusterRecord(job_id="77", backend="slurm", submit_host="login1")
    for environ in ({}, HUB):  # the hub's proxy does not reach a compute node
        assert hints.dashboard_hints(record, info(), environ) == {
            "proxy": None, "tunnel": "ssh -N -L 8787:10.0.0.5:8787 login1"}
    assert hints.client_dashboard_env("slurm", HUB) == {}


def test_the_link_is_what_dask_makes_of_it(monkeypatch):
    import dask
    from distributed.utils import format_dashboard_link

    link = hints.client_dashboard_env("local", HUB)["DASK_DISTRIBUTED__DASHBOARD__LINK"]
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)  # not needed by the link
    with dask.config.set({"distributed.dashboard.link": link}):
        assert format_dashboard_link("127.0.0.1", 8787) == "/user/alice/proxy/8787/status"
    assert dask.config.get("distributed.dashboard.link") == hints.DASK_DEFAULT_LINK


def test_the_connect_call_finds_the_cluster_from_anywhere(tmp_path):
    home = {"HOME": str(tmp_path)}
    local = ClusterRecord(job_id="local-vm", backend="local")
    state = StateDir(tmp_path / ".dasklaunch" / "local-vm")
    assert hints.connect_call(state, local, home) == "dasklaunch.connect()"
    job = ClusterRecord(job_id="1234", backend="slurm")
    scratch = {**home, "SCRATCH": str(tmp_path / "s"), "DASKLAUNCH_STATE_DIR": "/elsewhere"}
    state = StateDir(tmp_path / "s" / "dasklaunch" / "1234")
    assert hints.connect_call(state, job, scratch) == "dasklaunch.connect(job=1234)"
    other = StateDir(tmp_path / "mine")
    assert hints.connect_call(other, job, scratch) == f"dasklaunch.connect('{other.path}')"


def up_result(**changes) -> dict:
    result = {"job_id": "local-vm", "backend": "local", "state_dir": "/s",
              "scheduler_file": "/s/scheduler.json", "env_file": "/s/env.sh",
              "scheduler": {"address": "tls://127.0.0.1:40000",
                            "dashboard": "http://127.0.0.1:8787/status",
                            "dashboard_proxy": None},
              "tunnel": None, "workers": {"expected": 2}, "connect": "dasklaunch.connect()"}
    result.update(changes)
    return result


def test_up_ends_with_the_two_ways_to_connect(capsys):
    from dasklaunch.cli.show import print_up

    print_up(up_result())
    out = capsys.readouterr().out
    assert "ssh" not in out and "tunnel" not in out
    last = out.splitlines()[-3:]
    assert last[0] == 'connect    before starting Python:  . "$(dasklaunch env --path)"'
    assert last[1] == "           in a running Python:     client = dasklaunch.connect()"
    assert "Client(scheduler_file=...)" in last[2] and "TLS expects a ssl_context" in last[2]
    print_up(up_result(tunnel="ssh -N -L 8787:n1:8787 login1", connect="dasklaunch.connect("
                                                                         "job=77)"))
    out = capsys.readouterr().out
    assert "tunnel     ssh -N -L 8787:n1:8787 login1\n" in out
    assert "client = dasklaunch.connect(job=77)" in out


@pytest.mark.lifecycle
def test_the_jupyterhub_cluster_end_to_end(local_runner):
    """A local cluster on a JupyterHub: up prints the proxied link, no tunnel, and a client of
    the env file (or of connect()) links to the proxy."""
    hub = {"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"}
    up = local_runner("up", "--local-tasks", "1", "--dashboard-address", ":0", "--json",
                      check=True, extra_env=hub)
    try:
        facts = json.loads(up.stdout)
        port = facts["scheduler"]["dashboard"].rsplit(":", 1)[1].split("/")[0]
        assert facts["scheduler"]["dashboard_proxy"] == f"/user/alice/proxy/{port}/status"
        assert facts["tunnel"] is None
        env_text = (local_runner.state_dir / "env.sh").read_text()
        assert ("export DASK_DISTRIBUTED__DASHBOARD__LINK='/user/alice/proxy/{port}/status'"
                in env_text)
        client = ('. "$(python -m dasklaunch env --path)" && python -c "'
                  "from distributed import Client; "
                  "c = Client(scheduler_file=__import__('os').environ['SCHEDULER_FILE']); "
                  'print(c.dashboard_link); c.close()"')
        env = {**local_runner.env, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
        done = subprocess.run(["sh", "-c", client], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.stdout.strip().splitlines()[-1] == f"/user/alice/proxy/{port}/status", \
            done.stderr
    finally:
        local_runner("down", check=True)
