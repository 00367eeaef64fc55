"""`dasklaunch batch` and `dasklaunch logs`: the sbatch script against golden files, its shell
semantics with a stand-in dasklaunch, the CLI (CliRunner), and the script run for real with bash
against the local backend: a command's result and exit code, and SIGTERM at any point."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from cli_lines import one_error_line
from procs import _clean_env, group_alive, recorded_groups
from typer.testing import CliRunner

from dasklaunch.cli.app import app
from dasklaunch.domain import sbatch as batch
from dasklaunch.domain.sbatch import BatchSpec
from dasklaunch.domain.step_plan import StepPlan
from dasklaunch.errors import CommandError, UsageError
from dasklaunch.ops import batch as batch_ops
from dasklaunch.ops import logs as logs_ops
from dasklaunch.runtime.record import ClusterRecord, StepRun
from dasklaunch.runtime.state import StateDir
from dasklaunch.slurm.commands import parse_job_id

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = Path(__file__).parent / "expected" / "sbatch"
NASTY = 'it\'s "x" $HOME'
VENV = ("/opt/venv/bin/dasklaunch",)

# ------------------------------------------------------------------------------------ golden files

CASES = {
    "minimal": BatchSpec(command=("python3", "analysis.py"), dasklaunch=VENV),
    "full": BatchSpec(
        command=("python3", "analysis.py", "--input", "/data/run 1"), dasklaunch=VENV,
        up_args=("--interface", "ib0", "--per-node", "--worker-arg=--lifetime=2h"),
        nodes="16", ntasks_per_node=8, time="02:00:00", partition="batch", account="proj123",
        qos="normal", constraint="haswell&ib", job_name="analysis",
        output="/scratch/me/%x-%j.out",
        mem="0", sbatch_args=("--exclusive", "--mail-type=END,FAIL", "-w nid0001"),
        walltime_margin=300, state_dir="/scratch/me/dl state"),
    "nasty": BatchSpec(
        command=("sh", "-c", f"echo {NASTY}; exit 3", NASTY, "$(touch /tmp/pwned)", "a\\b"),
        dasklaunch=("/opt/my env/bin/python3", "-m", "dasklaunch"),
        up_args=(f"--scheduler-arg=--name={NASTY}", "--local-directory", "/tmp/a b"),
        nodes="2-4", job_name=NASTY, output="/scratch/it's/#1 \\ %j.out",
        sbatch_args=(f"--comment={NASTY} # not a comment",), state_dir=f"~/{NASTY}"),
    "prologue": BatchSpec(
        command=("python3", "analysis.py"), dasklaunch=VENV, nodes="3",
        prologue=("module load python/3.11", "source /opt/conda/bin/activate logs"),
        prologue_source="jobqueue.slurm.job-script-prologue in the Dask config"),
}


def golden(name: str, text: str) -> None:
    path = EXPECTED / f"{name}.sh"
    if os.environ.get("DASKLAUNCH_UPDATE_EXPECTED") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), (
        f"rendering changed; if intended, regenerate {path.relative_to(ROOT)} with "
        f"DASKLAUNCH_UPDATE_EXPECTED=1 pytest tests/test_batch.py")


@pytest.mark.parametrize("name", sorted(CASES))
def test_script_matches_expected(name):
    golden(name, batch.render(CASES[name]))


def test_render_is_pure_and_directives_sorted(tmp_path):
    import copy
    import pickle

    spec = CASES["full"]
    before = copy.deepcopy(spec)
    text = batch.render(spec)
    assert spec == before, "render changed its spec"
    # nor does it read the environment, the user's Dask config, the clock or the directory
    elsewhere = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "USER": "someone-else",
                 "PYTHONPATH": str(ROOT), "SLURM_JOB_ID": "9", "TZ": "Pacific/Kiritimati",
                 "DASK_JOBQUEUE__SLURM__ACCOUNT": "other", "DASK_CONFIG": str(tmp_path)}
    code = ("import pickle, sys\nfrom dasklaunch.domain import sbatch\n"
            "sys.stdout.write(sbatch.render(pickle.loads(sys.stdin.buffer.read())))\n")
    other = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(spec),
                           capture_output=True, env=elsewhere, cwd=tmp_path, timeout=60)
    assert other.returncode == 0, other.stderr
    assert other.stdout.decode() == text
    lines = batch.directives(spec)
    assert lines == sorted(lines)
    assert "#SBATCH --signal=B:TERM@300" in lines
    # sbatch reads directives only before the first command
    head = text.split("\nset -u\n")[0]
    assert all(line in head for line in lines)


def test_scripts_are_valid_bash(tmp_path):
    for name, spec in CASES.items():
        path = tmp_path / f"{name}.sh"
        path.write_text(batch.render(spec))
        result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, (name, result.stderr)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("name", ["minimal", "full"])
def test_scripts_pass_shellcheck(tmp_path, name):
    path = tmp_path / f"{name}.sh"
    path.write_text(batch.render(CASES[name]))
    result = subprocess.run(["shellcheck", "--shell=bash", str(path)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


def sbatch_tokens(line: str) -> list[str]:
    """sbatch's own reading of a directive line (_get_argument in src/sbatch/opt.c): quotes
    group, a backslash escapes the next character anywhere, an unquoted # ends the line."""
    tokens, i = [], 0
    while i < len(line):
        while i < len(line) and line[i].isspace():
            i += 1
        if i >= len(line):
            break
        arg, quote, escape = [], None, False
        while i < len(line) and (quote or not line[i].isspace()):
            ch = line[i]
            i += 1
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
                continue
            elif quote:
                if ch == quote:
                    quote = None
                    continue
            elif ch in "'\"":
                quote = ch
                continue
            elif ch == "#":
                return tokens
            arg.append(ch)
        tokens.append("".join(arg))
    return tokens


@pytest.mark.parametrize("value", [NASTY, "a\\b", "tab\there", "x'y", "#1 not a comment",
                                   "%j.out", "a  b", "ünïcode"])
def test_directive_values_survive_sbatch_parsing(value):
    spec = BatchSpec(command=("true",), dasklaunch=VENV, job_name=value, output=value,
                     sbatch_args=(f"--comment={value}",))
    parsed = {}
    for line in batch.directives(spec):
        [token] = sbatch_tokens(line[len("#SBATCH "):])
        name, _, parsed_value = token.partition("=")
        parsed[name] = parsed_value
    assert parsed["--job-name"] == parsed["--output"] == parsed["--comment"] == value


# ----------------------------------------------------------------------------- pure helpers

@pytest.mark.parametrize("text, seconds", [
    ("10", 600), ("1:30", 90), ("02:00:00", 7200), ("1-0", 86400), ("1-02:03", 93780),
    ("1-02:03:04", 93784), ("0", None), ("UNLIMITED", None), ("infinite", None)])
def test_slurm_time(text, seconds):
    assert batch.slurm_time_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "1h", "1:2:3:4", "-5", "1-", "ten"])
def test_slurm_time_rejects(text):
    with pytest.raises(UsageError, match="not a Slurm time"):
        batch.slurm_time_seconds(text)


@pytest.mark.parametrize("out, job", [("4242\n", "4242"), ("4242;cluster1\n", "4242"),
                                      ("warning: x\n77\n", "77")])
def test_parse_job_id(out, job):
    assert parse_job_id(out) == job


@pytest.mark.parametrize("out", ["", "Submitted batch job 12", "abc;x"])
def test_parse_job_id_rejects(out):
    with pytest.raises(CommandError, match="no job id"):
        parse_job_id(out)


@pytest.mark.parametrize("changes, needle", [
    ({"command": ()}, "no command"),
    ({"nodes": "three"}, "--nodes"),
    ({"nodes": "0"}, "--nodes"),
    ({"ntasks_per_node": 0}, "--ntasks-per-node"),
    ({"time": "1"}, "--walltime-margin 60s leaves no time"),
    ({"time": "2:00", "walltime_margin": 120}, "leaves no time"),
    ({"walltime_margin": 0}, "--walltime-margin"),
    ({"walltime_margin": 70000}, "--walltime-margin"),
    ({"job_name": "a\nb"}, "line break"),
    ({"partition": " "}, "must not be empty"),
    ({"sbatch_args": ("--nodes=2",)}, "use --nodes"),
    ({"sbatch_args": ("-t5",)}, "use --time"),
    ({"sbatch_args": ("--signal=USR1@30",)}, "use --walltime-margin"),
    ({"sbatch_args": ("mem=4G",)}, "one sbatch option"),
    ({"sbatch_args": ("--mem 4G",)}, "--name=value"),
    ({"sbatch_args": ("--comment=a\nb",)}, "line break"),
    # Slurm 26.05 refuses --gres=gpu with --gpus-per-node; earlier ones keep one of the two
    ({"gpus_per_node": 2, "sbatch_args": ("--gres=gpu:2",)}, "both ask for GPUs"),
    ({"gpus_per_node": 1, "sbatch_args": ("--gres=shard:1,gpu:a100:1",)}, "both ask for GPUs"),
    ({"gpus_per_node": 1, "extra_directives": ("--gres=gpu:1",)}, "job-extra-directives"),
])
def test_bad_specs(changes, needle):
    spec = BatchSpec(**{"command": ("true",), "dasklaunch": VENV, **changes})
    with pytest.raises(UsageError, match=needle.replace("(", r"\(")):
        batch.render(spec)


def test_installed_command_prefers_the_console_script_beside_python(tmp_path):
    python = tmp_path / "bin" / "python3"
    python.parent.mkdir()
    python.write_text("")
    assert batch_ops.installed_command(str(python)) == (str(python), "-m", "dasklaunch")
    script = tmp_path / "bin" / "dasklaunch"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert batch_ops.installed_command(str(python)) == (str(script),)


# -------------------------------------------------- shell semantics, with a stand-in dasklaunch

FAKE_DASKLAUNCH = '''\
#!{python}
"""Records each call; `up` and `down` exit with $FAKE_UP_EXIT / 0."""
import json, os, sys
log = os.environ["FAKE_LOG"]
with open(log, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:],
                        "state_dir": os.environ.get("DASKLAUNCH_STATE_DIR")}}) + "\\n")
def record(event):
    with open(log, "a") as f:
        f.write(json.dumps({{"event": event}}) + "\\n")
if sys.argv[1] == "up" and os.environ.get("FAKE_UP_HANGS"):
    import signal, time
    def rollback(*_):
        record("up got SIGTERM")
        time.sleep(1)  # rolling back, with the job lock held
        record("up rolled back")
        sys.exit(130)
    signal.signal(signal.SIGTERM, rollback)
    record("up waiting")
    time.sleep(60)
if sys.argv[1] == "up":
    sys.exit(int(os.environ.get("FAKE_UP_EXIT", "0")))
if sys.argv[1] == "env":
    path = os.path.join(os.path.dirname(log), "env.sh")
    with open(path, "w") as f:
        f.write("export SCHEDULER_FILE=/fake/scheduler.json\\n")
    print(path)
'''


def run_with_fake(tmp_path, spec: BatchSpec, **env) -> tuple[subprocess.CompletedProcess, list]:
    fake = tmp_path / "fake-dasklaunch"
    fake.write_text(FAKE_DASKLAUNCH.format(python=sys.executable))
    fake.chmod(0o755)
    script = tmp_path / "job.sh"
    script.write_text(batch.render(spec))
    log = tmp_path / "calls.jsonl"
    environ = {**_clean_env(), "DASKLAUNCH": str(fake), "FAKE_LOG": str(log), **env}
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=environ,
                            stdin=subprocess.DEVNULL, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def test_every_word_reaches_up_and_the_command_unchanged(tmp_path):
    printer = tmp_path / "argv.py"
    printer.write_text("import json, os, sys\n"
                       "seen = [sys.argv[1:], os.environ['SCHEDULER_FILE']]\n"
                       "print('ARGV ' + json.dumps(seen))\n")
    words = [NASTY, "$(touch pwned)", "a\\b", "*", "", "--nodes", "5", "line\nbreak"]
    spec = BatchSpec(command=(sys.executable, str(printer), *words), dasklaunch=("unused",),
                     up_args=(f"--scheduler-arg=--name={NASTY}", "--interface", "a b"),
                     state_dir=f"{tmp_path}/{NASTY}")
    result, calls = run_with_fake(tmp_path, spec)
    assert result.returncode == 0, result.stderr
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("ARGV ")][0]
    assert json.loads(line[5:]) == [words, "/fake/scheduler.json"]
    assert [c["argv"] for c in calls] == [
        ["up", f"--scheduler-arg=--name={NASTY}", "--interface", "a b"], ["env", "--path"],
        ["down"]]
    assert {c["state_dir"] for c in calls} == {f"{tmp_path}/{NASTY}"}
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


@pytest.mark.parametrize("code", [0, 3, 130])
def test_exit_code_is_the_commands_and_down_always_runs(tmp_path, code):
    spec = BatchSpec(command=("sh", "-c", f"exit {code}"), dasklaunch=("unused",))
    result, calls = run_with_fake(tmp_path, spec)
    assert result.returncode == code, result.stderr
    assert [c["argv"][0] for c in calls] == ["up", "env", "down"]
    assert f"command exited {code}" in result.stderr


def test_prologue_runs_first_and_shapes_the_whole_job(tmp_path):
    # an unset variable in the prologue must not trip the script's own `set -u`
    spec = BatchSpec(command=("sh", "-c", 'echo "SEEN $FROM_PROLOGUE"'), dasklaunch=("unused",),
                     prologue=('export FROM_PROLOGUE="${NOT_SET_ANYWHERE}loaded"',))
    result, calls = run_with_fake(tmp_path, spec)
    assert result.returncode == 0, result.stderr
    assert "SEEN loaded" in result.stdout
    assert [c["argv"][0] for c in calls] == ["up", "env", "down"]


def test_builtin_as_command(tmp_path):
    result, _ = run_with_fake(tmp_path, BatchSpec(command=("exit", "4"), dasklaunch=("x",)))
    assert result.returncode == 4


def test_sigterm_during_up_waits_for_its_rollback_before_down(tmp_path):
    spec = BatchSpec(command=("true",), dasklaunch=("unused",))
    fake = tmp_path / "fake-dasklaunch"
    fake.write_text(FAKE_DASKLAUNCH.format(python=sys.executable))
    fake.chmod(0o755)
    script = tmp_path / "job.sh"
    script.write_text(batch.render(spec))
    log = tmp_path / "calls.jsonl"
    env = {**_clean_env(), "DASKLAUNCH": str(fake), "FAKE_LOG": str(log), "FAKE_UP_HANGS": "1"}
    proc = subprocess.Popen(["bash", str(script)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    from dasklaunch.runtime.proc import wait_until

    assert wait_until(lambda: log.exists() and "up waiting" in log.read_text(), 30)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    events = [json.loads(line) for line in log.read_text().splitlines()]
    order = [e.get("event") or e["argv"][0] for e in events]
    assert order == ["up", "up waiting", "up got SIGTERM", "up rolled back", "down"]


def test_failed_up_skips_the_command_but_not_down(tmp_path):
    marker = tmp_path / "ran"
    spec = BatchSpec(command=("touch", str(marker)), dasklaunch=("unused",))
    result, calls = run_with_fake(tmp_path, spec, FAKE_UP_EXIT="2")
    assert result.returncode == 2
    assert "dasklaunch up failed (exit 2)" in result.stderr
    assert [c["argv"][0] for c in calls] == ["up", "down"]
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ CLI


def test_dry_run_prints_the_script(cli):
    result = cli("batch", "--nodes", "3", "--interface", "lab0", "--time", "30",
                 "--dry-run", "--", "python3", "analysis.py", "--nodes", "5", "--interface", "x")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert text.startswith("#!/bin/bash\n")
    assert "#SBATCH --nodes=3\n" in text and "#SBATCH --time=30\n" in text
    assert "#SBATCH --signal=B:TERM@60\n" in text
    assert '\n"${dasklaunch[@]}" up --interface lab0 &\n' in text
    # everything after -- is the command's, even words that look like options
    assert "\nargv=(python3 analysis.py --nodes 5 --interface x)\n" in text
    assert f"\n    dasklaunch=({batch.shlex.join(batch_ops.installed_command())})\n" in text
    assert "DASKLAUNCH_STATE_DIR" not in text


def test_jobqueue_yaml_account_queue_walltime_and_directives(tmp_path):
    """dask-jobqueue users keep their jobqueue.yaml: account, queue, walltime,
    job-extra-directives and job-directives-skip shape the batch job as they shape SLURMJob's."""
    config = tmp_path / "jobqueue.yaml"
    config.write_text("jobqueue:\n  slurm:\n    account: astro\n    queue: debug\n"
                      "    walltime: '00:30:00'\n    job-extra-directives: ['--exclusive', "
                      "'--mem=0', '--gres=gpu:1']\n    job-directives-skip: ['--gres']\n")

    def batch(*args: str, conf: Path = config) -> subprocess.CompletedProcess:
        env = {**_clean_env(), "HOME": str(tmp_path), "DASK_CONFIG": str(conf)}
        return subprocess.run([sys.executable, "-m", "dasklaunch", "batch", "--dry-run", *args,
                               "--", "true"], env=env, capture_output=True, text=True,
                              timeout=60)

    text = batch().stdout
    header = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    assert "#SBATCH --account=astro" in header and "#SBATCH --partition=debug" in header
    assert "#SBATCH --time=00:30:00" in header
    assert "#SBATCH --exclusive" in header and "#SBATCH --mem=0" in header
    assert not [line for line in header if "--gres" in line]
    assert ("# from jobqueue.yaml: account=astro, queue=debug, walltime=00:30:00, "
            "job-extra-directives, job-directives-skip (--gres)") in text
    # the command line wins
    mine = batch("--partition", "long").stdout
    assert "#SBATCH --partition=long" in mine and "queue=debug" not in mine
    bad = tmp_path / "bad.yaml"
    bad.write_text("jobqueue:\n  slurm:\n    job-extra-directives: ['--time=10']\n")
    refused = batch(conf=bad)
    assert refused.returncode == 2
    assert "jobqueue.yaml job-extra-directives '--time=10': use --time instead" in refused.stderr


def test_prologue_from_jobqueue_config_or_the_flag(cli, monkeypatch, tmp_path):
    config = tmp_path / "jobqueue.yaml"
    config.write_text("jobqueue:\n  slurm:\n    job-script-prologue:\n"
                      "      - module load python\n      - conda activate logs\n")
    monkeypatch.setenv("DASK_CONFIG", str(config))
    # a process of its own: dask reads its config files once, at import
    text = subprocess.run([sys.executable, "-m", "dasklaunch", "batch", "--dry-run", "--", "true"],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert ("# prologue, from jobqueue.slurm.job-script-prologue in the Dask config\n"
            "module load python\nconda activate logs\n") in text
    text = cli("batch", "--prologue", "module load dask", "--dry-run", "--", "true").stdout
    assert "# prologue, from --prologue\nmodule load dask\n" in text
    assert "conda activate" not in text


def test_batch_and_up_options_in_any_order(cli):
    result = cli("batch", "--per-node", "--nodes", "2", "-i", "ib0", "--worker-arg=--lifetime=1h",
                 "--job-name", "x", "--dry-run", "--", "true")
    assert result.exit_code == 0, result.stderr
    assert ' up --per-node -i ib0 --worker-arg=--lifetime=1h &\n' in result.stdout
    assert "#SBATCH --job-name=x\n" in result.stdout


def test_state_dir_given_to_up_is_used_by_every_step(cli, monkeypatch):
    monkeypatch.setenv("DASKLAUNCH_STATE_DIR", "/from/the/environment")
    result = cli("batch", "--state-dir", "/scratch/my state", "--dry-run", "--", "true")
    assert result.exit_code == 0, result.stderr
    assert "\nexport DASKLAUNCH_STATE_DIR='/scratch/my state'\n" in result.stdout
    assert " up --state-dir '/scratch/my state' &" in result.stdout
    only_env = cli("batch", "--dry-run", "--", "true")
    assert "export DASKLAUNCH_STATE_DIR" not in only_env.stdout


@pytest.mark.parametrize("args, needle", [
    (["--nodes", "3"], "no command to run"),
    (["--nodes", "3", "--"], "no command to run"),
    (["--nodez", "3", "--", "x"], "unknown option --nodez (did you mean --nodes"),
    (["--interfase", "ib0", "--", "x"], "did you mean --interface"),
    (["--nworkers", "0", "--", "x"], "--nworkers must be at least 1"),
    (["--nworkers", "two", "--", "x"], "'--nworkers'"),
    (["--memory-limit", "twelve", "--", "x"], "--memory-limit takes a fraction"),
    (["--wait-workers", "many", "--", "x"], "--wait-workers"),
    (["--backend", "pbs", "--", "x"], "unknown backend"),
    (["--profile", "nosuch", "--", "x"], "unknown profile"),
    (["--time", "1", "--", "x"], "--walltime-margin 60s leaves no time"),
    (["--time", "soon", "--", "x"], "not a Slurm time"),
    (["--nodes", "many", "--", "x"], "--nodes"),
    (["--job-name", "a\nb", "--", "x"], "line break"),
    (["--sbatch-arg=--nodes=2", "--", "x"], "use --nodes"),
    (["--sbatch-arg", "exclusive", "--", "x"], "one sbatch option"),
    # what `up` would refuse in the job is refused before the job is submitted, with up's
    # own message (these were submitted, to fail in the queue)
    (["--pool", "x:bogus=1", "--", "python", "x.py"], "--pool x: unknown key 'bogus'"),
    (["--pool", "gpu:nodes=0", "--", "x"], "nodes takes a node count of 1 or more"),
    (["--lifetime", "2x", "--", "x"], "--lifetime takes a duration"),
    (["--port", "99999", "--", "x"], "--port takes a port in 0-65535"),
    (["--nodes", "2", "--pool", "a:nodes=3", "--", "x"],
     "pool a: nodes=3, but only 2 nodes of the allocation are free"),
    (["--nodes", "1", "--pool", "a:nodes=nid[01,03]", "--", "x"],
     "the pools name 2 nodes (nid01, nid03), but the job asks for 1 node (--nodes)"),
    (["--gpus-per-node", "2", "--pool", "gpu:gpus-per-worker=4", "--", "x"],
     "gpus-per-worker=4, but its nodes have 2 GPUs"),
    (["--pool", "gpu", "--", "x"], "a pool named gpu gets 1 GPU per worker, but its nodes "
                                   "have none"),
    (["--ntasks-per-node", "2", "--wait-workers", "5", "--", "x"],
     "--wait-workers 5 is more than the 2 workers"),
    (["--gpus-per-node", "0", "--", "x"], "--gpus-per-node must be at least 1"),
    (["--mem", "lots", "--", "x"], "--mem takes a size per node"),
    (["--sbatch-arg=--mem=8G", "--", "x"], "use --mem instead"),
    (["--sbatch-arg=--gpus-per-node=2", "--", "x"], "use --gpus-per-node instead"),
])
def test_bad_input_is_exit_2_with_one_line(cli, args, needle):
    result = cli("batch", "--dry-run", *args)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert needle in one_error_line(result)
    assert result.stdout == ""


FAKE_SBATCH = '''\
#!/bin/sh
# Stands in for sbatch: records its arguments and the script, answers like --parsable.
printf '%s\\n' "$@" > "$FAKE_SBATCH_DIR/argv"
cp "$2" "$FAKE_SBATCH_DIR/script.sh"
echo "$2" > "$FAKE_SBATCH_DIR/path"
[ -n "$FAKE_SBATCH_FAIL" ] && { echo "sbatch: error: $FAKE_SBATCH_FAIL" >&2; exit 1; }
echo "4242;cluster1"
'''


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(FAKE_SBATCH)
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SBATCH_DIR", str(tmp_path))
    return tmp_path


def test_submit_prints_the_job_id(cli, fake_sbatch):
    args = ["batch", "--nodes", "2", "--job-name", NASTY, "--", "python3", "a.py"]
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "4242\n"
    assert "submitted batch job 4242" in result.stderr
    assert "dasklaunch logs --state-dir" in result.stderr
    assert (fake_sbatch / "argv").read_text().splitlines()[0] == "--parsable"
    dry = cli(*args[:1], "--dry-run", *args[1:])
    assert (fake_sbatch / "script.sh").read_text() == dry.stdout
    # sbatch keeps its own copy: the temporary script is gone
    assert not Path((fake_sbatch / "path").read_text().strip()).exists()


def test_submit_failure_is_one_line(cli, fake_sbatch, monkeypatch):
    monkeypatch.setenv("FAKE_SBATCH_FAIL", "Batch job submission failed: Invalid partition")
    result = cli("batch", "--partition", "nosuch", "--", "true")
    assert result.exit_code == 1
    assert "Invalid partition" in one_error_line(result)


def test_submit_without_sbatch(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = cli("batch", "--", "true")
    assert result.exit_code == 1
    assert "command not found: sbatch" in one_error_line(result)


# ----------------------------------------------------------------------------------------- logs

def log_step(log: Path, pool: str = "workers") -> StepRun:
    return StepRun(StepPlan(role="workers", name=log.stem, placement="tasks", ntasks=1,
                            nnodes=1, command=(), log=str(log), pool=pool, expected=1))


def fake_cluster(path: Path, pools: int = 2) -> StateDir:
    state = StateDir(path)
    state.create()
    sched = state.logs / "dl-sched-1.log"
    sched.write_text("".join(f"sched line {i}\n" for i in range(5)))
    record = ClusterRecord(job_id="1", backend="local", scheduler=log_step(sched))
    for n in range(pools):
        log = state.logs / f"dl-workers{n}.log"
        log.write_text("".join(f"pool{n} line {i}\n" for i in range(3)))
        record.pools.append(log_step(log, pool=f"pool{n}"))
    state.write_record(record)
    return state


def test_logs_all_scheduler_workers(cli, tmp_path):
    state = fake_cluster(tmp_path / "state")
    result = cli("logs", "--state-dir", str(state.path))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    # headers say whose log it is: the scheduler's, or the pool's by its name
    assert out.startswith(f"==> scheduler ({state.logs / 'dl-sched-1.log'}) <==\n"
                          f"sched line 0\n")
    assert f"==> pool pool1 ({state.logs / 'dl-workers1.log'}) <==\n" in out
    assert "pool1 line 2\n" in out and out.count("==>") == 3
    sched = cli("logs", "scheduler", "-n", "2", "--state-dir", str(state.path))
    assert sched.stdout == "sched line 3\nsched line 4\n"
    workers = cli("logs", "workers", "--lines", "1", "--state-dir", str(state.path))
    assert "pool0 line 2\n" in workers.stdout and "pool1 line 2\n" in workers.stdout
    assert "sched line" not in workers.stdout


def test_logs_of_one_pool(cli, tmp_path):
    state = fake_cluster(tmp_path / "state", pools=3)
    one = cli("logs", "--pool", "pool1", "-n", "1", "--state-dir", str(state.path))
    assert (one.exit_code, one.stdout) == (0, "pool1 line 2\n"), one.stderr
    unknown = cli("logs", "--pool", "nope", "--state-dir", str(state.path))
    assert unknown.exit_code == 2
    assert "no pool 'nope' in this cluster (pools: pool0, pool1, pool2)" in unknown.stderr
    sched = cli("logs", "scheduler", "--pool", "pool1", "--state-dir", str(state.path))
    assert sched.exit_code == 2 and "not the scheduler's" in sched.stderr


def test_logs_show_the_last_20_lines_unless_told_all(cli, tmp_path):
    state = fake_cluster(tmp_path / "state", pools=1)
    log = state.logs / "dl-workers0.log"
    log.write_text("".join(f"line {i}\n" for i in range(63)))
    default = cli("logs", "workers", "--state-dir", str(state.path))
    assert default.exit_code == 0, default.stderr
    assert default.stdout == "".join(f"line {i}\n" for i in range(43, 63))
    everything = cli("logs", "workers", "-n", "all", "--state-dir", str(state.path))
    assert everything.stdout == log.read_text()
    assert cli("logs", "workers", "--lines=0", "--state-dir", str(state.path)).stdout == ""
    help_text = " ".join(cli("logs", "--help").stdout.split())
    assert "[default: 20]" in help_text and "'all'" in help_text


def test_logs_of_a_log_not_written_yet(cli, tmp_path):
    state = fake_cluster(tmp_path / "state", pools=1)
    (state.logs / "dl-workers0.log").unlink()
    result = cli("logs", "workers", "--state-dir", str(state.path))
    assert result.exit_code == 0
    assert "no such log (yet)" in result.stderr


def test_logs_errors(cli, tmp_path):
    not_up = cli("logs", "--state-dir", str(tmp_path / "none"))
    assert not_up.exit_code == 1 and "no dasklaunch cluster" in one_error_line(not_up)
    state = fake_cluster(tmp_path / "state")
    bad = cli("logs", "everything", "--state-dir", str(state.path))
    assert bad.exit_code == 2 and "scheduler, workers or all" in one_error_line(bad)
    for bad_lines in ("-1", "ten", ""):
        bad_count = cli("logs", "-n", bad_lines, "--state-dir", str(state.path))
        assert bad_count.exit_code == 2 and "--lines" in one_error_line(bad_count)


@pytest.mark.parametrize("tail", ["x\n", "x", ""])
@pytest.mark.parametrize("lines", [None, 0, 1, 3, 50])
def test_read_tail_across_blocks(tmp_path, monkeypatch, tail, lines):
    monkeypatch.setattr(logs_ops, "_BLOCK", 7)
    path = tmp_path / "log"
    body = "".join(f"line {i}\n" for i in range(20)) + tail
    path.write_text(body)
    data, end = logs_ops.read_tail(path, lines)
    all_lines = body.splitlines(keepends=True)
    assert end == len(body)
    expected = "".join(all_lines if lines is None else all_lines[len(all_lines) - lines:]
                       if lines else [])
    assert data.decode() == expected


def test_logs_follow_until_ctrl_c(tmp_path):
    state = fake_cluster(tmp_path / "state", pools=2)
    log0, log1 = state.logs / "dl-workers0.log", state.logs / "dl-workers1.log"
    env = {**_clean_env(), "DASKLAUNCH_STATE_DIR": str(state.path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "dasklaunch", "logs", "workers", "-f",
                             "-n", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()

    def expect(text: str) -> list[str]:
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=0.5))
            except queue.Empty:
                continue
            if text in seen[-1]:
                return seen
        raise AssertionError(f"{text!r} never came; saw {seen}")

    try:
        assert expect("pool1 line 2") == [f"==> pool pool0 ({log0}) <==\n", "pool0 line 2\n",
                                          "\n", f"==> pool pool1 ({log1}) <==\n",
                                          "pool1 line 2\n"]
        with open(log0, "a") as log:
            log.write("half a li")
            log.flush()
            # make sure the follower has read the half line: it reads the logs in order, so the
            # poll that prints a second line appended to log1 after the first one was printed
            # read log0 after the half line was written
            for n in (1, 2):
                with open(log1, "a") as other:
                    other.write(f"marker {n}\n")
                assert expect(f"marker {n}") == [f"marker {n}\n"]
            log.write("ne\n")
        assert expect("half a line") == ["\n", f"==> pool pool0 ({log0}) <==\n",
                                         "half a line\n"]
        # restart-workers: the record names a new pool log, followed from its start
        record = state.read_record()
        new_log = state.logs / "dl-workers9.log"
        new_log.write_text("new pool 0\n")
        record.pools = [log_step(new_log, pool="pool0")]
        state.write_record(record)
        seen = expect("new pool 0")
        assert f"==> pool pool0 ({new_log}) <==\n" in seen
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0, proc.stderr.read()


# --------------------------------------------------------- the script, for real, on this machine

CLIENT = '''\
import os, sys
from distributed import Client
with Client(scheduler_file=os.environ["SCHEDULER_FILE"], timeout="60s") as client:
    total = client.submit(sum, range(10)).result()
    print("RESULT", total, len(client.scheduler_info()["workers"]), flush=True)
sys.exit(int(sys.argv[1]))
'''

SLEEPER = '''\
import os, time
print("COMMAND", "READY", os.getpid(), flush=True)
time.sleep(300)
'''

UP_ARGS = ["--local-tasks", "2", "--dashboard-address", ":0", "--timeout", "90"]


def render_with_cli(state_dir: Path, *command: str) -> str:
    result = CliRunner().invoke(app, ["batch", "--dry-run", *UP_ARGS, "--", *command],
                                env={"DASKLAUNCH_STATE_DIR": str(state_dir)})
    assert result.exit_code == 0, result.stderr
    return result.stdout


def local_env(state_dir: Path) -> dict[str, str]:
    # PYTHONPATH: the job must run this checkout even if another one is installed
    return {**_clean_env(), "DASKLAUNCH_STATE_DIR": str(state_dir), "PYTHONPATH": str(ROOT)}


def assert_cluster_down(state_dir: Path) -> None:
    record = json.loads((state_dir / "state.json").read_text())
    assert record["status"] == "down"
    groups = recorded_groups(state_dir)
    assert groups
    for pgid, started in groups:
        assert not group_alive(pgid, started), f"process group {pgid} still runs"
    assert not (state_dir / "scheduler.json").exists()


@pytest.mark.lifecycle
@pytest.mark.parametrize("code", [0, 3])
def test_script_runs_the_command_against_a_local_cluster(tmp_path, no_leftovers, code):
    state_dir = tmp_path / "state"
    no_leftovers.append(state_dir)
    (tmp_path / "client.py").write_text(CLIENT)
    script = tmp_path / "job.sh"
    script.write_text(render_with_cli(state_dir, sys.executable, "client.py", str(code)))
    result = subprocess.run(["bash", str(script)], cwd=tmp_path, env=local_env(state_dir),
                            capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            timeout=240)
    assert result.returncode == code, result.stdout + result.stderr
    assert "RESULT 45 2" in result.stdout
    assert "dasklaunch batch: cluster down" in result.stderr
    assert_cluster_down(state_dir)
    logs = subprocess.run([sys.executable, "-m", "dasklaunch", "logs", "scheduler", "-n", "5"],
                          env=local_env(state_dir), capture_output=True, text=True, timeout=60)
    assert logs.returncode == 0 and "scheduler" in logs.stdout.lower(), logs.stderr


def start_script(tmp_path: Path, state_dir: Path) -> tuple[subprocess.Popen, queue.Queue]:
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    script = tmp_path / "job.sh"
    script.write_text(render_with_cli(state_dir, sys.executable, "sleeper.py"))
    proc = subprocess.Popen(["bash", str(script)], cwd=tmp_path, env=local_env(state_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)
    lines: queue.Queue[str] = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def read_until(lines: queue.Queue, text: str, timeout: float = 180) -> list[str]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line == "":
            break
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never came:\n{''.join(seen)}")


def drain(lines: queue.Queue) -> str:
    out = []
    while True:
        line = lines.get(timeout=60)
        if line == "":
            return "".join(out)
        out.append(line)


@pytest.mark.lifecycle
def test_sigterm_while_the_command_runs_brings_the_cluster_down(tmp_path, no_leftovers):
    state_dir = tmp_path / "state"
    no_leftovers.append(state_dir)
    proc, lines = start_script(tmp_path, state_dir)
    try:
        ready = read_until(lines, "COMMAND READY")
        command_pid = int(ready[-1].split()[-1])
        proc.send_signal(signal.SIGTERM)  # what --signal=B:TERM@MARGIN does at the margin
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    rest = drain(lines)
    assert code == 143, rest
    assert "SIGTERM during command" in rest and "cluster down" in rest
    assert_cluster_down(state_dir)
    from dasklaunch.runtime import proc as dlproc

    assert dlproc.wait_until(lambda: not os.path.exists(f"/proc/{command_pid}")
                             or "Z" in _state_of(command_pid), 10)


def _state_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.mark.lifecycle
def test_sigterm_while_up_waits_rolls_back_then_down(tmp_path, no_leftovers):
    state_dir = tmp_path / "state"
    no_leftovers.append(state_dir)
    proc, lines = start_script(tmp_path, state_dir)
    try:
        read_until(lines, "scheduler starting")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    rest = drain(lines)
    assert code == 143, rest
    assert "SIGTERM during up" in rest
    assert "COMMAND READY" not in rest
    # up rolled back and released the job lock, so down ran (it finds nothing left to stop)
    assert "job is busy" not in rest and "cluster down" in rest
    for pgid, started in recorded_groups(state_dir):
        assert not group_alive(pgid, started)


def test_help_shows_the_command_form(cli):
    result = cli("batch", "--help")
    assert result.exit_code == 0
    assert "-- COMMAND" in result.stdout
    text = textwrap.dedent(result.stdout)
    assert "--walltime-margin" in text and "--sbatch-arg" in text


@pytest.mark.parametrize("args, lines", [
    # a profile: `batch` resolves it as `up` does (it ended in "internal error: TypeError")
    (["--profile", "conservative", "--", "echo", "hi"], ["--profile conservative"]),
    # a pool on hosts named by a Slurm host list
    (["--nodes", "2", "--pool", "a:nodes=nid[01,03]", "--", "x"], ["a:nodes=nid[01,03]"]),
    # the request's shape, which batch plans on, in the script's directives
    (["--nodes", "2", "--gpus-per-node", "2", "--cpus-per-task", "4", "--mem", "64G",
      "--pool", "gpu:nodes=1", "--pool", "cpu:gpus-per-worker=0", "--", "x"],
     ["#SBATCH --gpus-per-node=2", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=64G"]),
])
def test_batch_plans_what_up_would_and_submits_it(cli, args, lines):
    result = cli("batch", "--dry-run", *args)
    assert result.exit_code == 0, result.stderr
    for line in lines:
        assert line in result.stdout, result.stdout


@pytest.mark.parametrize("command, mounts, tmpdir, warned", [
    ("/tmp/venv/bin/dasklaunch", "/dev/vda / ext4 rw 0 0\n", None, "under /tmp"),
    ("/scratch-local/me/venv/bin/dasklaunch", "/dev/vda / ext4 rw 0 0\n",
     "/scratch-local/me", "under /scratch-local/me"),
    ("/ram/venv/bin/python3", "tmpfs /ram tmpfs rw 0 0\n", None, "on tmpfs"),
    ("/home/me/venv/bin/dasklaunch", "srv:/home /home nfs4 rw 0 0\n", None, None),
    ("/home/me/venv/bin/dasklaunch", "/dev/vda / ext4 rw 0 0\n", None, None),
])
def test_batch_warns_about_a_dasklaunch_only_this_node_has(command, mounts, tmpdir, warned):
    warning = batch_ops.node_local_install((command,), mounts_text=mounts,
                                           environ={"TMPDIR": tmpdir} if tmpdir else {})
    if warned is None:
        assert warning is None
    else:
        assert f"the job runs {command}, which is {warned} here" in warning


def test_a_gres_that_is_not_a_gpu_goes_with_gpus_per_node():
    spec = BatchSpec(command=("true",), dasklaunch=VENV, gpus_per_node=2,
                     sbatch_args=("--gres=nvme:1", "--gres-flags=enforce-binding"))
    assert "#SBATCH --gres=nvme:1" in batch.render(spec)
