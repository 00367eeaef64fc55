"""`dasklaunch profile list|show|check|write` through the real CLI app: exit codes, stdout,
and the one-line error on stderr for every bad input."""

import json
import os
import re
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dasklaunch.cli.app import app
from dasklaunch.profiles import load

EXPECTED = Path(__file__).parent / "expected" / "profiles"
DISTRIBUTED = f"distributed {version('distributed')}"


@pytest.fixture(autouse=True)
def sandbox(tmp_path, monkeypatch):
    """Run in tmp_path with an empty home and no Slurm or Dask variables from the caller."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.startswith(("SLURM_", "DASK_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return home


def run(*args: str):
    return CliRunner().invoke(app, ["profile", *args])


def user_config(home: Path) -> Path:
    return home / ".config" / "dask" / "distributed.yaml"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.*.bak"))


# ---------------------------------------------------------------- list, show, check

def test_list_shows_every_shipped_profile_with_its_description():
    result = run("list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for entry in load.list_profiles():
        assert any(line.split()[0] == entry.name and line.endswith(entry.description)
                   for line in lines), entry.name
    assert result.stderr == ""


def test_list_marks_user_profiles_and_survives_a_broken_one(sandbox):
    user_dir = sandbox / ".config" / "dasklaunch" / "profiles"
    write(user_dir / "mine.yaml", "description: mine\n")
    write(user_dir / "broken.yaml", "distributed: [\n")
    result = run("list")
    assert result.exit_code == 0, result.output
    assert "mine          mine  [user: ~/.config/dasklaunch/profiles/mine.yaml]" in result.stdout
    assert re.search(r"^broken +INVALID: .*broken.yaml is not YAML: line 2", result.stdout, re.M)


@pytest.mark.parametrize("name", sorted(p.stem for p in EXPECTED.glob("*.yaml")))
def test_show_prints_the_job_config(name):
    result = run("show", name)
    assert result.exit_code == 0, result.output
    assert result.stdout == (EXPECTED / f"{name}.yaml").read_text()


def test_check_a_name_and_a_file(tmp_path):
    result = run("check", "seed")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"ok: profile seed ({load.load_profile('seed').source}) is valid\n"
    path = write(tmp_path / "mine.yaml", """\
        description: sizes written three ways
        dasklaunch: {memory-limit: 12 GB}
        distributed:
          worker: {memory: {max-spill: 12GiB, target: false, spill: false}}
          comm: {offload: 12e9}
          scheduler: {allowed_failures: 5}
        """)
    result = run("check", str(path), "--mem-per-node", "16GiB")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("is valid for 16.00 GiB per node (--mem-per-node)\n")
    result = run("check", str(path))
    assert result.stdout.endswith("is valid (memory-limit not checked against a node: give "
                                  "--mem-per-node)\n")


def test_check_uses_the_slurm_memory_per_node(monkeypatch):
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "2000")
    result = run("check", "seed")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("is valid for 1.95 GiB per node (SLURM_MEM_PER_NODE=2000)\n")


# The table of bad inputs: (case, file content, extra arguments, extra environment, message).
# Every one must exit 2 with exactly one line on stderr.
BAD = [
    ("not YAML", "distributed:\n  worker: {memory: {pause: 0.8\n", [], {},
     "bad.yaml is not YAML: line 3: expected ',' or '}', but got '<stream end>'"),
    ("a tab", "distributed:\n\tworker: 1\n", [], {},
     "bad.yaml is not YAML: line 2: found character '\\t' that cannot start any token"),
    ("a list", "- a\n- b\n", [], {},
     "bad.yaml is not a profile: expected a YAML mapping, got a list"),
    ("plain text", "twelve gigabytes please\n", [], {},
     "bad.yaml is not a profile: expected a YAML mapping, got a string"),
    ("unknown top-level key", "logging: {distributed: info}\n", [], {},
     "bad.yaml: unknown top-level key 'logging' (a profile has description, why, dasklaunch, "
     "distributed)"),
    ("unknown key", "distributed:\n  worker:\n    memroy: {pause: 0.8}\n", [], {},
     f"unknown key distributed.worker.memroy (not in {DISTRIBUTED}'s config schema; did you "
     f"mean memory?)"),
    ("unknown nested key", "distributed: {worker: {memory: {pasue: 0.8}}}\n", [], {},
     f"unknown key distributed.worker.memory.pasue (not in {DISTRIBUTED}'s config schema; did "
     f"you mean pause?)"),
    ("key in both spellings",
     "distributed: {scheduler: {allowed_failures: 2, allowed-failures: 3}}\n", [], {},
     "distributed.scheduler.allowed-failures is written twice (as allowed_failures and "
     "allowed-failures)"),
    ("key written twice", "distributed:\n  worker:\n    memory:\n      pause: 0.8\n"
                          "      pause: 0.9\n", [], {},
     "bad.yaml is not YAML: line 5: key 'pause' appears twice"),
    ("fraction above 1", "distributed: {worker: {memory: {pause: 1.5}}}\n", [], {},
     "distributed.worker.memory.pause: 1.5 is not a fraction in (0, 1] or false"),
    ("a percentage", "distributed: {worker: {memory: {pause: 80}}}\n", [], {},
     "distributed.worker.memory.pause: 80 is not a fraction in (0, 1] or false "
     "(did you mean 0.8?)"),
    ("negative fraction", "distributed: {worker: {memory: {target: -0.1}}}\n", [], {},
     "distributed.worker.memory.target: -0.1 is not a fraction in (0, 1] or false"),
    ("zero fraction", "distributed: {worker: {memory: {spill: 0}}}\n", [], {},
     "distributed.worker.memory.spill: 0 is not a fraction in (0, 1] or false"),
    ("true as fraction", "distributed: {worker: {memory: {spill: true}}}\n", [], {},
     "distributed.worker.memory.spill: true is not a fraction in (0, 1] or false"),
    ("quoted fraction", "distributed: {worker: {memory: {pause: '0.8'}}}\n", [], {},
     "distributed.worker.memory.pause: '0.8' is not a fraction in (0, 1] or false"),
    ("terminate 0", "distributed: {worker: {memory: {terminate: 0}}}\n", [], {},
     "distributed.worker.memory.terminate: 0 would kill every worker as soon as it starts; "
     "use false to never terminate"),
    ("pause > terminate", "distributed: {worker: {memory: {pause: 0.96, terminate: 0.95}}}\n",
     [], {},
     "distributed.worker.memory: pause 0.96 is above terminate 0.95: the nanny would kill "
     "workers before they pause (keep target <= spill <= pause <= terminate)"),
    ("target > spill", "distributed: {worker: {memory: {target: 0.8, spill: 0.7}}}\n", [], {},
     "distributed.worker.memory: target 0.8 is above spill 0.7: spilling would start below the "
     "level it spills down to (keep target <= spill <= pause <= terminate)"),
    ("spill > pause", "distributed: {worker: {memory: {spill: 0.85, pause: 0.8}}}\n", [], {},
     "distributed.worker.memory: spill 0.85 is above pause 0.8: workers would pause before "
     "they spill (keep target <= spill <= pause <= terminate)"),
    ("order across a false one",
     "distributed: {worker: {memory: {target: 0.9, spill: false, pause: 0.8}}}\n", [], {},
     "distributed.worker.memory: target 0.9 is above pause 0.8: thresholds must rise (keep "
     "target <= spill <= pause <= terminate)"),
    ("order against Dask's defaults", "distributed: {worker: {memory: {terminate: 0.5}}}\n",
     [], {},
     "distributed.worker.memory: pause 0.8 (Dask's default) is above terminate 0.5: the nanny "
     "would kill workers before they pause (keep target <= spill <= pause <= terminate)"),
    ("word for an integer", "distributed: {scheduler: {allowed-failures: many}}\n", [], {},
     "distributed.scheduler.allowed-failures: many is not an integer >= 0"),
    ("negative integer", "distributed: {scheduler: {allowed-failures: -1}}\n", [], {},
     "distributed.scheduler.allowed-failures: -1 is not an integer >= 0"),
    ("true for an integer", "distributed: {scheduler: {allowed-failures: true}}\n", [], {},
     "distributed.scheduler.allowed-failures: true is not an integer >= 0"),
    ("not in an enum", "distributed: {worker: {memory: {spill-compression: gzip}}}\n", [], {},
     "distributed.worker.memory.spill-compression: gzip is not one of null, false, auto, zlib, "
     "lz4, snappy, zstd"),
    ("scalar for a section", "distributed: {worker: 5}\n", [], {},
     "distributed.worker must be a mapping, not 5"),
    ("scalar for distributed", "distributed: 5\n", [], {},
     "bad.yaml: distributed must be a mapping of distributed config keys, not 5"),
    ("bad size", "distributed: {worker: {memory: {max-spill: twelve}}}\n", [], {},
     "distributed.worker.memory.max-spill: not a memory size: 'twelve' (use e.g. 12GB, 12GiB "
     "or 12e9)"),
    ("bad memory-limit", "dasklaunch: {memory-limit: twelve}\n", [], {},
     "dasklaunch.memory-limit: not a memory size: 'twelve' (use e.g. 12GB, 12GiB or 12e9)"),
    ("false memory-limit", "dasklaunch: {memory-limit: false}\n", [], {},
     "dasklaunch.memory-limit: false is not a memory size (use e.g. 12GB, 12GiB or 12e9)"),
    ("zero memory-limit", "dasklaunch: {memory-limit: 0}\n", [], {},
     "dasklaunch.memory-limit: 0 would give workers no memory"),
    ("memory-limit over --mem-per-node", "dasklaunch: {memory-limit: 64GiB}\n",
     ["--mem-per-node", "32GiB"], {},
     "dasklaunch.memory-limit 64.00 GiB is larger than the allocation's 32.00 GiB per node"),
    ("memory-limit over SLURM_MEM_PER_NODE", "dasklaunch: {memory-limit: 4GB}\n", [],
     {"SLURM_MEM_PER_NODE": "2000"},
     "dasklaunch.memory-limit 3.73 GiB is larger than the allocation's 1.95 GiB per node"),
    ("memory-limit over SLURM_MEM_PER_CPU", "dasklaunch: {memory-limit: 4GB}\n", [],
     {"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_ON_NODE": "2"},
     "dasklaunch.memory-limit 3.73 GiB is larger than the allocation's 1.95 GiB per node"),
    ("bad --mem-per-node", "description: fine\n", ["--mem-per-node", "twelve"], {},
     "--mem-per-node: not a memory size: 'twelve' (use e.g. 12GB, 12GiB or 12e9)"),
    ("garbage SLURM_MEM_PER_NODE", "description: fine\n", [], {"SLURM_MEM_PER_NODE": "2G"},
     "SLURM_MEM_PER_NODE='2G' is not a number of megabytes"),
    ("memory-fraction above 1", "dasklaunch: {memory-fraction: 1.2}\n", [], {},
     "dasklaunch.memory-fraction: 1.2 is not a fraction in (0, 1]"),
    ("memory-fraction 0", "dasklaunch: {memory-fraction: 0}\n", [], {},
     "dasklaunch.memory-fraction: 0 is not a fraction in (0, 1]"),
    ("memory-fraction false", "dasklaunch: {memory-fraction: false}\n", [], {},
     "dasklaunch.memory-fraction: false is not a fraction in (0, 1]"),
    ("unknown layout", "dasklaunch: {layout: per-host}\n", [], {},
     "dasklaunch.layout: per-host is not one of per-node, per-task"),
    ("unknown hint", "dasklaunch: {memory-fractoin: 0.5}\n", [], {},
     "unknown key dasklaunch.memory-fractoin (not in dasklaunch's sizing hints; did you mean "
     "memory-fraction?)"),
    ("fraction and limit", "dasklaunch: {memory-fraction: 0.5, memory-limit: 1GB}\n", [], {},
     "dasklaunch.memory-fraction and dasklaunch.memory-limit are both set; keep one"),
    ("scalar for hints", "dasklaunch: per-node\n", [], {},
     "bad.yaml: dasklaunch must be a mapping of sizing hints, not per-node"),
    ("two-line description", "description: |\n  two\n  lines\n", [], {},
     "bad.yaml: description must be one line of text"),
]


@pytest.mark.parametrize("case, text, args, env, message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, case, text, args, env, message):
    (tmp_path / "bad.yaml").write_text(text)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = run("check", "bad.yaml", *args)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"dasklaunch: error: {message}\n"
    assert result.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["show", "nope"], "unknown profile 'nope' (known: conservative, dask-default, large-scale, "
                       "no-terminate, seed; or give a file path)"),
    (["check", "missing.yaml"], "profile file missing.yaml does not exist"),
    (["check", "."], "profile . is a directory, not a YAML file"),
])
def test_missing_profiles(args, message):
    result = run(*args)
    assert (result.exit_code, result.stderr) == (2, f"dasklaunch: error: {message}\n")


# ---------------------------------------------------------------- write

def test_write_creates_the_user_config_by_default(sandbox):
    result = run("write", "seed")
    assert result.exit_code == 0, result.output
    path = user_config(sandbox)
    assert yaml.safe_load(path.read_text()) == {
        "distributed": load.load_profile("seed").distributed}
    assert result.stdout.splitlines() == [
        f"--- {path}", f"+++ {path} (profile seed)",
        "+distributed.worker.memory.target: false", "+distributed.worker.memory.spill: false",
        "+distributed.worker.memory.pause: 0.8", "+distributed.worker.memory.terminate: 0.95",
        f"wrote profile seed to {path}"]
    assert result.stderr == ("dasklaunch: warning: profile seed's sizing (layout per-node, "
                             "memory-fraction 0.9) is not part of distributed.yaml; it applies "
                             "with `dasklaunch up --profile seed`\n")
    assert backups(path) == []


def test_write_ignores_dask_config_and_says_so(sandbox, tmp_path, monkeypatch):
    elsewhere = tmp_path / "job-config"
    elsewhere.mkdir()
    monkeypatch.setenv("DASK_CONFIG", str(elsewhere))
    result = run("write", "large-scale")
    assert result.exit_code == 0, result.output
    assert user_config(sandbox).exists() and list(elsewhere.iterdir()) == []
    assert result.stderr == (f"dasklaunch: warning: DASK_CONFIG={elsewhere} is set: Dask reads "
                             f"it after {user_config(sandbox).parent} and its keys win over "
                             f"this file\n")


def test_write_warns_about_dask_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE", "0.5")
    result = run("write", "dask-default", "--dest", str(tmp_path / "d.yaml"))
    assert result.exit_code == 0, result.output
    assert result.stderr == ("dasklaunch: warning: DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE is "
                             "set and overrides distributed.worker.memory.pause from any config "
                             "file\n")


ORIGINAL = """\
# my settings
logging:
  distributed: info
distributed:
  scheduler:
    work_stealing: false
    allowed-failures: 2
  nanny:
    pre-spawn-environ: {MY_VAR: x}
"""


def test_write_merges_keeps_user_keys_and_a_backup(tmp_path):
    dest = write(tmp_path / "distributed.yaml", ORIGINAL)
    dest.chmod(0o600)
    result = run("write", "large-scale", "--dest", str(dest))
    assert result.exit_code == 0, result.output
    merged = yaml.safe_load(dest.read_text())
    assert merged["logging"] == {"distributed": "info"}
    assert merged["distributed"]["scheduler"] == {
        "work_stealing": False, "allowed-failures": 10, "worker-ttl": "15 minutes"}
    assert merged["distributed"]["nanny"] == {"pre-spawn-environ": {"MY_VAR": "x"}}
    assert merged["distributed"]["comm"]["timeouts"] == {"connect": "120s", "tcp": "120s"}
    [backup] = backups(dest)
    assert backup.read_text() == ORIGINAL
    assert re.fullmatch(r"distributed\.yaml\.\d{8}-\d{6}\.bak", backup.name)
    assert (dest.stat().st_mode & 0o777, backup.stat().st_mode & 0o777) == (0o600, 0o600)
    assert "-distributed.scheduler.allowed-failures: 2" in result.stdout
    assert "+distributed.scheduler.allowed-failures: 10" in result.stdout
    assert result.stdout.endswith(f"wrote profile large-scale to {dest}; previous version kept "
                                  f"as {backup}\n")
    assert result.stderr == (f"dasklaunch: warning: comments in {dest} are not kept (the "
                             f"backup has them)\n")


def test_write_refuses_to_change_memory_keys_without_force(tmp_path):
    dest = write(tmp_path / "distributed.yaml",
                 "distributed:\n  worker:\n    memory: {pause: 0.7, terminate: 0.95}\n")
    before = dest.read_text()
    result = run("write", "seed", "--dest", str(dest))
    assert result.exit_code == 2
    assert result.stderr == (f"dasklaunch: error: {dest} already sets memory keys that profile "
                             f"seed would change (pause 0.7 -> 0.8); rerun with --force to "
                             f"replace them\n")
    assert dest.read_text() == before and backups(dest) == []

    result = run("write", "seed", "--dest", str(dest), "--force")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(dest.read_text())["distributed"]["worker"]["memory"] == {
        "pause": 0.8, "terminate": 0.95, "target": False, "spill": False}
    assert "-distributed.worker.memory.pause: 0.7\n+distributed.worker.memory.pause: 0.8\n" \
        in result.stdout
    [backup] = backups(dest)
    assert backup.read_text() == before


def test_write_twice_changes_nothing_the_second_time(tmp_path):
    dest = tmp_path / "distributed.yaml"
    assert run("write", "seed", "--dest", str(dest)).exit_code == 0
    written = dest.read_text()
    result = run("write", "seed", "--dest", str(dest))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{dest} already has profile seed's settings; nothing written\n"
    assert dest.read_text() == written and backups(dest) == []


def test_write_with_set_overrides(tmp_path):
    dest = tmp_path / "distributed.yaml"
    result = run("write", "seed", "--dest", str(dest), "--set", "worker.memory.pause=0.85",
                 "--set", "distributed.scheduler.allowed-failures=1")
    assert result.exit_code == 0, result.output
    settings = yaml.safe_load(dest.read_text())["distributed"]
    assert settings["worker"]["memory"]["pause"] == 0.85
    assert settings["scheduler"]["allowed-failures"] == 1


def test_write_leaves_the_files_own_thresholds_alone(tmp_path):
    # Out of order against Dask's defaults (target 0.6), but large-scale sets no thresholds.
    dest = write(tmp_path / "distributed.yaml", "distributed: {worker: {memory: {spill: 0.5}}}\n")
    result = run("write", "large-scale", "--dest", str(dest))
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(dest.read_text())["distributed"]["worker"] == {"memory": {"spill": 0.5}}


def test_write_into_a_directory_and_through_a_symlink(tmp_path):
    assert run("write", "seed", "--dest", str(tmp_path)).exit_code == 0
    assert (tmp_path / "distributed.yaml").exists()
    real = write(tmp_path / "dotfiles" / "dask.yaml", "distributed: {scheduler: "
                                                      "{allowed-failures: 2}}\n")
    link = tmp_path / "config" / "distributed.yaml"
    link.parent.mkdir()
    link.symlink_to(real)
    assert run("write", "seed", "--dest", str(link)).exit_code == 0
    assert link.is_symlink()
    assert yaml.safe_load(real.read_text())["distributed"]["worker"]["memory"]["pause"] == 0.8


WRITE_BAD = [
    (["--set", "dasklaunch.layout=per-task"], None,
     "--set dasklaunch.layout: sizing hints are used by `dasklaunch up --profile`, not by "
     "distributed.yaml"),
    (["--set", "worker.memory.pause"], None,
     "--set expects key=value, not 'worker.memory.pause'"),
    (["--set", "worker.memroy.pause=0.5"], None,
     f"unknown key distributed.worker.memroy (not in {DISTRIBUTED}'s config schema; did you "
     f"mean memory?)"),
    (["--set", "worker.memory.pause=0.99"], None,
     "distributed.worker.memory: pause 0.99 is above terminate 0.95: the nanny would kill "
     "workers before they pause (keep target <= spill <= pause <= terminate)"),
    ([], "- a list\n", "cannot merge into {dest}: it is not a YAML mapping"),
    ([], "distributed: [\n", "{dest} is not YAML: line 2: expected the node content, but "
                             "found '<stream end>'"),
    (["large-scale", "--set", "worker.memory.pause=0.45"],
     "distributed: {worker: {memory: {target: 0.4, spill: 0.5}}}\n",
     "distributed.worker.memory: spill 0.5 (in {dest}) is above pause 0.45: workers would pause "
     "before they spill (keep target <= spill <= pause <= terminate)"),
]


@pytest.mark.parametrize("args, existing, message", WRITE_BAD)
def test_write_bad_input_exits_2_and_writes_nothing(tmp_path, args, existing, message):
    args = list(args)
    dest = tmp_path / "distributed.yaml"
    if existing is not None:
        dest.write_text(existing)
    name = args.pop(0) if args and not args[0].startswith("-") else "seed"
    result = run("write", name, "--dest", str(dest), *args)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"dasklaunch: error: {message.format(dest=dest)}\n"
    assert dest.exists() == (existing is not None)
    assert existing is None or dest.read_text() == existing
    assert backups(dest) == []


def test_dask_reads_the_written_file_and_not_the_backup(sandbox):
    """After `write`, a new Dask process of this user gets the profile's values; the backup
    (holding the old ones) sits in the same directory and must not be read."""
    write(user_config(sandbox), "distributed:\n  worker:\n    memory: {pause: 0.7}\n"
                                "  scheduler: {work-stealing: false}\n")
    assert run("write", "seed", "--force").exit_code == 0
    assert len(backups(user_config(sandbox))) == 1
    code = ("import json, dask; print(json.dumps([dask.config.get(k) for k in "
            "['distributed.worker.memory.pause', 'distributed.worker.memory.target', "
            "'distributed.scheduler.work-stealing']]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=60).stdout
    assert json.loads(out) == [0.8, False, False]


def test_profile_commands_do_not_import_distributed(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from typer.testing import CliRunner
        from dasklaunch.cli.app import app
        runner = CliRunner()
        for args in (["list"], ["show", "seed"], ["check", "large-scale"],
                     ["write", "seed", "--dest", {str(tmp_path / "d.yaml")!r}]):
            result = runner.invoke(app, ["profile", *args])
            assert result.exit_code == 0, (args, result.output)
        loaded = sorted(m for m in ("distributed", "dask") if m in sys.modules)
        assert not loaded, loaded
        """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
