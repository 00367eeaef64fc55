"""`--container`, `--container-runtime`, `--container-arg`: resolved once with `up`'s other
options, from the command line (`up`, `batch`), a profile, a pool, or the Python API's keywords;
bad values are one line (exit 2) before anything starts or is submitted."""

from __future__ import annotations

import pytest
from cli_lines import one_error_line

from dasklaunch.domain.container import (
    check_container_options,
    check_fits,
    check_used,
    choose_runtime,
    images_in_use,
)
from dasklaunch.domain.pool_spec import parse_pool, pool_text
from dasklaunch.domain.settings import UpOptions, options_from
from dasklaunch.domain.up_argv import up_argv
from dasklaunch.errors import UsageError
from dasklaunch.ops.resolve import check_container_use, resolve_profile
from dasklaunch.profiles.hints import check_hints


@pytest.fixture
def cli(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("DASKLAUNCH_STATE_DIR", str(tmp_path / "state"))
    return cli



BAD = [
    (["--container-runtime", "docker"], "docker's daemon starts containers outside the job"),
    (["--container", "x.sif", "--container-runtime", "lxc"],
     "--container-runtime takes auto, apptainer, singularity, podman, pyxis, not 'lxc'"),
    (["--container", " "], "--container takes an image"),
    (["--container=-v"], "an image does not start with '-'"),
    (["--container", "a\nb"], "an image holds no control characters"),
    (["--container", "x.sif", "--container-arg", ""], "--container-arg takes a runtime option"),
    (["--container-runtime", "podman"], "--container-runtime podman needs --container IMAGE"),
    (["--container-arg=--userns"], "--container-arg needs --container IMAGE"),
    (["--pool", "gpu:container=-x"], "--pool gpu: container '-x': an image does not start"),
]


@pytest.mark.parametrize("args, needle", BAD)
def test_up_refuses_in_one_line(cli, args, needle):
    result = cli("up", "--dry-run", "--local-tasks", "1", *args)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert needle in one_error_line(result)
    assert result.stdout == ""


@pytest.mark.parametrize("args, needle", BAD)
def test_batch_refuses_at_submit_time(cli, args, needle):
    result = cli("batch", "--dry-run", *args, "--", "python3", "x.py")
    assert result.exit_code == 2, result.stdout + result.stderr
    assert needle in one_error_line(result)


def test_batch_passes_the_options_to_up_in_the_job(cli):
    result = cli("batch", "--dry-run", "--container", "/images/my dask.sif",
                 "--container-runtime", "apptainer", "--container-arg=--userns", "--",
                 "python3", "x.py")
    assert result.exit_code == 0, result.stderr
    assert ("up --container '/images/my dask.sif' --container-runtime apptainer "
            "--container-arg=--userns") in result.stdout


def test_the_api_takes_the_command_lines_names():
    opts, given = options_from({"container": "docker://python:3.12", "container_arg": ["-u"],
                                "container_runtime": "apptainer"})
    assert (opts.container, opts.container_runtime, opts.container_args) == \
        ("docker://python:3.12", "apptainer", ("-u",))
    assert given == {"container", "container_runtime", "container_args"}
    with pytest.raises(UsageError, match="did you mean container"):
        options_from({"contaner": "x.sif"})


def test_the_options_go_back_into_ups_command_line_and_the_record():
    opts, given = options_from({"container": "a b.sif", "container_arg": ["--userns", "-B"]})
    assert up_argv(opts, given) == ["--container=a b.sif", "--container-arg=--userns",
                                    "--container-arg=-B"]
    assert UpOptions.from_dict(opts.to_dict()) == opts


def test_a_pool_names_its_own_image_or_none():
    spec = parse_pool("gpu:nodes=1,container=docker://rapids:25.02")
    assert spec.container == "docker://rapids:25.02"
    assert parse_pool(pool_text(spec)) == spec
    assert parse_pool("cpu:container=none").container == "none"
    with pytest.raises(UsageError, match="not KEY=VALUE"):
        parse_pool("cpu:container=")


def test_images_in_use_the_jobs_first_each_once():
    assert images_in_use(None, [None, None]) == []
    assert images_in_use("a.sif", [None, "b.sif", "a.sif"]) == ["a.sif", "b.sif"]
    assert images_in_use("a.sif", ["none"]) == ["a.sif"]
    assert images_in_use(None, ["b.sif", "none"]) == ["b.sif"]
    assert images_in_use("none", [None]) == []


def test_runtime_and_its_options_need_an_image():
    check_used(["a.sif"], "podman", ["--userns"])
    check_used([], "auto", [])
    with pytest.raises(UsageError, match="--container-runtime pyxis needs --container"):
        check_used([], "pyxis", [])


def test_a_profile_gives_the_image_and_the_runtime_the_command_line_wins(monkeypatch):
    hints = {"layout": None, "pools": (), "memory_fraction": None, "memory_limit": None,
             "rmm_pool_size": None, "container": "docker://dask:1", "container_runtime": "podman"}
    monkeypatch.setattr("dasklaunch.profiles.load.load_profile", lambda name: object())
    monkeypatch.setattr("dasklaunch.profiles.load.profile_hints", lambda profile: hints)
    monkeypatch.setattr("dasklaunch.profiles.schema.validate_profile", lambda *a: None)
    opts, _, _, origin = resolve_profile(UpOptions(profile="p"), alloc=_Alloc())
    assert (opts.container, opts.container_runtime) == ("docker://dask:1", "podman")
    assert origin["container"] == "profile p: container=docker://dask:1"
    given = UpOptions(profile="p", container="mine.sif", container_runtime="apptainer")
    opts, _, _, origin = resolve_profile(given, alloc=_Alloc())
    assert (opts.container, opts.container_runtime) == ("mine.sif", "apptainer")
    assert "container" not in origin
    # --container none: no container, over the profile's image
    opts, _, _, _ = resolve_profile(UpOptions(profile="p", container="none"), alloc=_Alloc())
    assert check_container_use(opts).container is None


class _Alloc:
    mem_per_node = None


@pytest.mark.parametrize("hints, needle", [
    ({"container": "-x"}, "dasklaunch.container '-x': an image does not start"),
    ({"container-runtime": "docker"},
     "dasklaunch.container-runtime: docker is not one of auto, apptainer"),
])
def test_profile_keys_are_checked(hints, needle):
    with pytest.raises(UsageError, match=needle):
        check_hints(hints, None)


def test_runtime_choice_follows_the_order_and_refuses_what_is_missing():
    assert choose_runtime("auto", {"podman", "apptainer"}.__contains__) == "apptainer"
    assert choose_runtime("auto", {"podman", "singularity"}.__contains__) == "singularity"
    assert choose_runtime("auto", {"podman", "pyxis"}.__contains__) == "pyxis"
    assert choose_runtime("auto", {"podman"}.__contains__) == "podman"
    assert choose_runtime("podman", {"podman", "apptainer"}.__contains__) == "podman"
    with pytest.raises(UsageError, match="--container-runtime podman: podman is not installed"):
        choose_runtime("podman", {"apptainer"}.__contains__)
    with pytest.raises(UsageError, match="srun has no --container-image"):
        choose_runtime("pyxis", set().__contains__)
    with pytest.raises(UsageError, match="no container runtime here"):
        choose_runtime("auto", set().__contains__)


def test_auto_asks_only_as_far_as_it_needs():
    asked = []
    choose_runtime("auto", lambda name: asked.append(name) or name == "apptainer")
    assert asked == ["apptainer"]   # no `srun --help` when apptainer is there


@pytest.mark.parametrize("backend, here, args, needle", [
    ("local", False, (), "the local backend has none"),
    ("slurm", True, (), "--scheduler-here runs the scheduler outside any step"),
    ("slurm", False, ("--userns",), "--container-arg --userns: with pyxis"),
])
def test_pyxis_runs_only_srun_steps(backend, here, args, needle):
    with pytest.raises(UsageError, match=needle):
        check_fits("pyxis", args, backend=backend, scheduler_here=here)


def test_pyxis_takes_its_own_options_and_the_others_anything():
    check_fits("pyxis", ("--container-writable", "--no-container-mount-home"), backend="slurm",
               scheduler_here=False)
    check_fits("apptainer", ("--userns",), backend="local", scheduler_here=True)
    check_container_options(None, "auto", ())
