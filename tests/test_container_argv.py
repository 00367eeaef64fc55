"""The container command lines (domain/container_argv.py) against exact lists per runtime, and
properties drawn at random (Hypothesis): any set of variables and bind paths reaches the
container as given, read back the way each runtime reads its flags (apptainer's --env as
pflag's stringToString does, Pyxis's --container-mounts as its args.c splits them), and a path
with spaces stays one argv item. The image's check (domain/image_check.py): its program, and
what its answer means."""

from __future__ import annotations

import csv
import io
import shlex
import signal
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dasklaunch.domain.container import ContainerJob
from dasklaunch.domain.container_argv import (
    PODMAN_START,
    TASK_VARIABLES,
    WATCH_MODULE,
    Container,
    apptainer_env_item,
    podman_kill_argv,
    podman_names,
    podman_remove_argv,
    srun_options,
    task_argv,
)
from dasklaunch.domain.image_check import (
    MARKER,
    ImageFacts,
    check_command,
    failure,
    judge,
    parse_answer,
)
from dasklaunch.errors import UsageError

PROPERTY = settings(max_examples=80, deadline=None, derandomize=True)
INNER = ["/opt/env/bin/python", "-m", "dasklaunch.launch.node", "--pool", "gpu", "--",
         "/opt/env/bin/python", "-m", "distributed.cli.dask_worker"]
STATE = "/home/u/my state/.dasklaunch/77"


def container(runtime: str, **changes) -> Container:
    values = dict(runtime=runtime, image="/images/dask.sif", binds=(STATE, "/tmp"),
                  env=(("DASK_CONFIG", f"{STATE}/config"), ("PYTHONNOUSERSITE", "1")),
                  gpus="nvidia", workdir=STATE)
    return Container(**{**values, **changes})


# ------------------------------------------------------------------------------------ examples

def test_apptainer():
    assert task_argv(container("apptainer"), INNER) == [
        "apptainer", "exec", "--bind", f"{STATE}:{STATE}", "--bind", "/tmp:/tmp",
        "--env", f"DASK_CONFIG={STATE}/config", "--env", "PYTHONNOUSERSITE=1", "--nv",
        "--pwd", STATE, "/images/dask.sif", *INNER]
    assert srun_options(container("apptainer")) == []


def test_singularity_is_apptainers_command_line_under_its_name_with_rocm_for_amd():
    argv = task_argv(container("singularity", gpus="amd", env=(), args=("--userns",)), ["true"])
    assert argv == ["singularity", "exec", "--bind", f"{STATE}:{STATE}", "--bind", "/tmp:/tmp",
                    "--rocm", "--pwd", STATE, "--userns", "/images/dask.sif", "true"]


def test_podman():
    argv = task_argv(container("podman", image="docker.io/library/dask:2026.8",
                               watch_dir=f"{STATE}/podman"), INNER)
    task_vars = [word for name in TASK_VARIABLES for word in ("-e", name)]
    assert argv == [
        "/bin/sh", "-c", PODMAN_START, "podman", f"{STATE}/podman",
        "--rm", "--init", "--network", "host", "--ipc", "host",
        "-v", f"{STATE}:{STATE}", "-v", "/tmp:/tmp", *task_vars,
        "-e", f"DASK_CONFIG={STATE}/config", "-e", "PYTHONNOUSERSITE=1",
        "--device", "nvidia.com/gpu=all", "--workdir", STATE,
        "docker.io/library/dask:2026.8", INNER[0], "-m", WATCH_MODULE, "--", *INNER]
    # without a lock directory (the image check): the command as it is, no watcher
    plain = task_argv(container("podman"), INNER)
    assert plain[4] == "" and plain[-len(INNER) - 1:] == ["/images/dask.sif", *INNER]


def test_podmans_shell_names_each_task_and_passes_every_argument_untouched(tmp_path):
    """The /bin/sh that starts `podman run`, run for real with a stand-in for podman that
    prints its arguments and whether the task's lock is held (by flock(1), not by it)."""
    fake = tmp_path / "podman"
    fake.write_text("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n"
                    "for f in \"$LOCKS\"/*.lock; do flock -n \"$f\" true || echo held; done\n"
                    "awk '/^SigIgn/ {print \"SigIgn\", $2}' /proc/self/status\n")
    fake.chmod(0o755)
    locks = tmp_path / "locks dir"
    argv = task_argv(container("podman", binds=("/a b",), env=(("X", "1 2"),),
                               watch_dir=str(locks)), ["py", "a b", "$HOME"])
    argv[3] = str(fake)
    env = {"SLURM_JOB_ID": "77", "SLURM_STEP_ID": "3", "SLURM_PROCID": "5",
           "PATH": "/usr/bin:/bin", "LOCKS": str(locks)}
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout
    # podman gets TERM, INT and HUP back at their defaults (flock ignores them), where env(1)
    # can give them back
    ignored = int(out.splitlines()[-1].split()[1], 16)
    out = "\n".join(out.splitlines()[:-1]) + "\n"
    env_resets = subprocess.run(["env", "--default-signal=TERM", "true"], capture_output=True)
    if env_resets.returncode == 0:
        assert not ignored & (1 << (signal.SIGTERM - 1) | 1 << (signal.SIGINT - 1)
                              | 1 << (signal.SIGHUP - 1))
    lock = f"{locks}/dasklaunch-77.3.5.lock"
    # held (by flock, not by podman: -o) while podman runs
    assert out.splitlines() == ["run", "--name", "dasklaunch-77.3.5", "-e",
                                f"DASKLAUNCH_OUTSIDE_LOCK={lock}", *argv[5:], "held"]
    assert podman_names("77", "3", 6)[5] == "dasklaunch-77.3.5"
    argv[4] = ""    # no lock directory: podman run alone
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout
    assert out.splitlines()[:3] == ["run", "--name", "dasklaunch-77.3.5"]
    assert "DASKLAUNCH_OUTSIDE_LOCK" not in out


def test_podman_gpus_per_vendor_and_none_for_cpu_pools():
    def devices(gpus):
        argv = task_argv(container("podman", gpus=gpus), ["true"])
        return [argv[i + 1] for i, word in enumerate(argv) if word == "--device"]
    assert devices("nvidia") == ["nvidia.com/gpu=all"]
    assert devices("amd") == ["/dev/kfd", "/dev/dri"]
    assert devices("intel") == ["/dev/dri"]
    assert devices(None) == []


def test_pyxis_is_srun_options_and_leaves_the_command_alone():
    c = container("pyxis", image="nvcr.io#nvidia/rapidsai/base:25.02",
                  args=("--no-container-mount-home",))
    assert task_argv(c, INNER) == INNER
    assert srun_options(c) == [
        "--container-image=nvcr.io#nvidia/rapidsai/base:25.02",
        f"--container-mounts={STATE}:{STATE},/tmp:/tmp", f"--container-workdir={STATE}",
        "--container-env=DASK_CONFIG,PYTHONNOUSERSITE", "--no-container-mount-home"]


def test_pyxis_options_are_ones_pyxis_documents():
    """Each option is one of Pyxis's spank options (args.c), as srun --help lists them."""
    documented = {"--container-image", "--container-mounts", "--container-workdir",
                  "--container-name", "--container-save", "--container-mount-home",
                  "--no-container-mount-home", "--container-remap-root",
                  "--no-container-remap-root", "--container-entrypoint",
                  "--no-container-entrypoint", "--container-entrypoint-log",
                  "--container-writable", "--container-readonly", "--container-env"}
    options = srun_options(container("pyxis", args=("--container-remap-root",)))
    assert {option.partition("=")[0] for option in options} <= documented


def test_without_binds_env_workdir_or_gpus_only_the_image():
    bare = Container(runtime="apptainer", image="x.sif")
    assert task_argv(bare, ["true"]) == ["apptainer", "exec", "x.sif", "true"]
    assert srun_options(Container(runtime="pyxis", image="x")) == ["--container-image=x"]


@pytest.mark.parametrize("runtime, path, needle", [
    ("apptainer", "/data/a,b", "apptainer cannot bind a path that holds ','"),
    ("pyxis", "/data/a:b", "pyxis cannot bind a path that holds ':'"),
    ("podman", "/data/a:b", "podman cannot bind a path that holds ':'"),
    ("podman", "relative", "must be absolute"),
])
def test_paths_a_runtime_cannot_bind_are_refused_in_one_line(runtime, path, needle):
    with pytest.raises(UsageError, match=needle):
        task_argv(container(runtime, binds=(path,)), ["true"]) + \
            srun_options(container(runtime, binds=(path,)))


def test_a_comma_is_a_path_podman_binds():
    argv = task_argv(container("podman", binds=("/data/a,b",)), ["true"])
    assert "/data/a,b:/data/a,b" in argv


def test_binds_each_once():
    argv = task_argv(container("apptainer", binds=("/tmp", "/tmp/", STATE)), ["true"])
    assert [argv[i + 1] for i, w in enumerate(argv) if w == "--bind"] == [
        "/tmp:/tmp", f"{STATE}:{STATE}"]


@pytest.mark.parametrize("name, value, needle", [
    ("A-B", "1", "names of letters, digits and _"),
    ("X", 'ends with a quote"', "drops a closing double quote"),
    ("X", "a=b\rc", "carriage return"),
])
def test_variables_a_runtime_cannot_pass_are_refused(name, value, needle):
    with pytest.raises(UsageError, match=needle):
        task_argv(container("apptainer", env=((name, value),)), ["true"])


def test_podman_names_and_their_cleanup():
    names = podman_names("77", "4", 2)
    assert names == ["dasklaunch-77.4.0", "dasklaunch-77.4.1"]
    assert podman_kill_argv(names) == ["podman", "kill", "--signal=TERM", *names]
    assert podman_remove_argv(names) == ["podman", "rm", "--force", "--ignore", *names]


def test_the_jobs_containers():
    job = ContainerJob(runtime="apptainer", image="a.sif", args=("--userns",), binds=(STATE,),
                       workdir=STATE, gpu_vendor="amd", pythons=(("a.sif", "/opt/py"),))
    assert ContainerJob.from_dict(job.to_dict()) == job
    assert (job.image_for(None), job.image_for("b.sif"), job.image_for("none")) == \
        ("a.sif", "b.sif", None)
    assert (job.python("a.sif"), job.python("b.sif")) == ("/opt/py", "python3")
    c = job.container("a.sif", {"B": "2", "A": "1"}, gpus=True, binds=("/scratch/local",))
    assert c == Container(runtime="apptainer", image="a.sif", binds=(STATE, "/scratch/local"),
                          env=(("A", "1"), ("B", "2")), gpus="amd", workdir=STATE,
                          args=("--userns",))
    assert job.container("a.sif", {}, gpus=False).gpus is None


# -------------------------------------------------------------------------------- properties

def pflag_string_to_string(value: str) -> dict[str, str]:
    """How apptainer reads one --env (spf13/pflag's stringToStringValue.Set)."""
    if value.count("=") == 0:
        raise ValueError(f"{value} must be formatted as key=value")
    if value.count("=") == 1:
        items = [value.strip('"')]
    else:
        items = next(csv.reader(io.StringIO(value, newline=""), strict=True))
    return dict(item.split("=", 1) for item in items)


def read_flags(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == flag]


NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
VALUES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0\r"),
                 max_size=16).filter(lambda v: "=" in v or not v.endswith('"'))
ENV = st.dictionaries(NAMES, VALUES, max_size=6)
PATH = st.lists(st.text(st.characters(blacklist_categories=("Cs",),
                                      blacklist_characters="\0/:,"), min_size=1, max_size=8),
                min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
BINDS = st.lists(PATH, max_size=4, unique=True)
RUNTIME = st.sampled_from(["apptainer", "singularity", "podman", "pyxis"])


@PROPERTY
@given(env=ENV, binds=BINDS, runtime=RUNTIME)
def test_every_variable_and_path_reaches_the_container_as_given(env, binds, runtime):
    c = Container(runtime=runtime, image="img", binds=tuple(binds), env=tuple(env.items()))
    argv, options = task_argv(c, ["cmd"]), srun_options(c)
    # the image and the command stay last, whole
    if runtime != "pyxis":
        assert argv[-2:] == ["img", "cmd"]
    if runtime in ("apptainer", "singularity"):
        seen: dict[str, str] = {}
        for item in read_flags(argv, "--env"):
            seen.update(pflag_string_to_string(item))
        assert seen == env
        assert read_flags(argv, "--bind") == [f"{p}:{p}" for p in binds]
    elif runtime == "podman":
        pairs = [item for item in read_flags(argv, "-e") if "=" in item]
        assert dict(item.split("=", 1) for item in pairs) == env
        assert read_flags(argv, "-v") == [f"{p}:{p}" for p in binds]
    else:
        assert argv == ["cmd"]
        given = {o.partition("=")[0]: o.partition("=")[2] for o in options}
        names = given.get("--container-env")
        assert (names.split(",") if names else []) == sorted(env)
        mounts = given.get("--container-mounts")
        read = [tuple(m.split(":")) for m in mounts.split(",")] if mounts else []
        assert read == [(p, p) for p in binds]


@PROPERTY
@given(binds=BINDS, runtime=RUNTIME)
def test_a_path_with_spaces_stays_one_argv_item(binds, runtime):
    spaced = [f"{path}/with space" for path in binds]
    c = Container(runtime=runtime, image="/my images/x.sif", binds=tuple(spaced),
                  workdir=spaced[0] if spaced else None)
    argv = task_argv(c, ["cmd"]) + srun_options(c)
    joined = shlex.split(shlex.join(argv))
    assert joined == argv
    for path in spaced:
        assert any(path in item for item in argv)
    if runtime != "pyxis":
        assert "/my images/x.sif" in argv
    else:
        assert "--container-image=/my images/x.sif" in argv


@PROPERTY
@given(name=NAMES, value=st.text(st.characters(blacklist_categories=("Cs",)), max_size=16))
def test_apptainer_env_items_read_back_or_are_refused(name, value):
    try:
        item = apptainer_env_item(name, value)
    except UsageError:
        assert "\r" in value or ("=" not in value and value.endswith('"'))
        return
    assert pflag_string_to_string(item) == {name: value}


# ----------------------------------------------------------------------------- image check

FACTS = ImageFacts(image="dask.sif", python="/opt/env/bin/python", python_version="3.12.4",
                   dasklaunch="0.2.0", dask="2026.8.0", distributed="2026.8.0")


def test_the_check_program_runs_and_its_answer_is_read():
    out = subprocess.run(check_command(sys.executable), capture_output=True, text=True,
                         check=True).stdout
    facts = parse_answer("here", "Welcome to the image!\n" + out)
    assert facts.python == sys.executable and facts.dasklaunch


def test_the_answer_is_found_among_other_output():
    text = (f"INFO:    Converting OCI blobs to SIF format\n{MARKER}"
            '{"python": "/usr/bin/python3", "python_version": "3.11.2", "dasklaunch": null, '
            '"dask": "2024.1.0", "distributed": "2024.1.0"}\n')
    facts = parse_answer("docker://python:3.11", text)
    assert (facts.python, facts.dasklaunch, facts.dask) == ("/usr/bin/python3", None,
                                                            "2024.1.0")


@pytest.mark.parametrize("output", ["", "Python 2.7\n", f"{MARKER}not json\n"])
def test_no_answer_is_one_line(output):
    with pytest.raises(UsageError, match="printed no answer to dasklaunch's check"):
        parse_answer("x.sif", output)


def test_a_matching_image_passes_without_a_word():
    assert judge(FACTS, dasklaunch="0.2.0", distributed="2026.8.0") == []


@pytest.mark.parametrize("changes, needle", [
    ({"dasklaunch": None}, "container image dask.sif has no dasklaunch (its Python, "
                           "/opt/env/bin/python (3.12.4)): install dasklaunch 0.2.0"),
    ({"dasklaunch": "0.1.0"}, "container image dask.sif has dasklaunch 0.1.0, this `up` is "
                              "0.2.0"),
    ({"dask": None, "distributed": None}, "has no dask and no distributed"),
    ({"distributed": None}, "has no distributed"),
])
def test_what_the_cluster_cannot_run_from_is_refused_in_one_line(changes, needle):
    facts = ImageFacts(**{**FACTS.to_dict(), **changes})
    with pytest.raises(UsageError) as err:
        judge(facts, dasklaunch="0.2.0", distributed="2026.8.0")
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_another_distributed_is_a_warning():
    warnings = judge(FACTS, dasklaunch="0.2.0", distributed="2025.1.0")
    assert warnings == ["container image dask.sif has distributed 2026.8.0, this `up` runs "
                        "under 2025.1.0: clients here and the cluster there may not understand "
                        "each other; use the same version in both"]


@pytest.mark.parametrize("runtime, output, why", [
    ("apptainer", "FATAL:   could not open image /x.sif: failed to retrieve path for /x.sif: "
                  "lstat /x.sif: no such file or directory\n",
     "FATAL:   could not open image /x.sif"),
    ("podman", "Trying to pull docker.io/library/nosuch:latest...\nError: initializing source "
               "docker://nosuch:latest: reading manifest latest: requested access to the "
               "resource is denied\n", "Error: initializing source docker://nosuch:latest"),
    ("podman", "Error: crun: executable file `python3` not found in $PATH: No such file or "
               "directory: OCI runtime attempted to invoke a command that was not found\n",
     "executable file `python3` not found"),
    ("pyxis", "pyxis: importing docker image: nosuch\npyxis: [ERROR] URL https://x returned "
              "error code: 401 Unauthorized\nsrun: error: node1: task 0: Exited with exit "
              "code 1\n", "pyxis: [ERROR] URL https://x returned error code: 401"),
])
def test_a_run_that_failed_is_one_line_in_the_runtimes_words(runtime, output, why):
    line = failure("x", runtime, 255, output)
    assert line.startswith(f"container image x: {runtime} could not run python3 in it (exit "
                           f"255): ")
    assert why in line and "\n" not in line
