"""Memory profiles: shipped profiles are valid and reach Dask, loading, validation, rendering,
merging, and sizing from the allocation (Slurm variables, cgroups)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dasklaunch.domain import node_memory
from dasklaunch.errors import UsageError
from dasklaunch.profiles import dask_config, load, schema
from dasklaunch.runtime.state import JOB_CONFIG_DIR

EXPECTED = Path(__file__).parent / "expected" / "profiles"
REQUIRED = {"dask-default", "seed", "conservative", "no-terminate", "large-scale"}
MiB, GiB = 2**20, 2**30


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """An empty home: no user profiles, no ~/.config/dask, whatever the machine has."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def shipped_names():
    return sorted(path.stem for path in load.shipped_profile_dir().glob("*.yaml"))


def leaves(tree: dict, prefix: str = "distributed") -> dict:
    """{"distributed.worker.memory.pause": 0.8, ...} for every leaf of a config tree."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}"
        if isinstance(value, dict) and value:
            out.update(leaves(value, path))
        else:
            out[path] = value
    return out


# ---------------------------------------------------------------- the shipped profiles

def test_the_issue_profiles_are_shipped():
    assert set(shipped_names()) >= REQUIRED


@pytest.mark.parametrize("name", shipped_names())
def test_shipped_profile_is_valid_and_explained(name):
    profile = load.load_profile(name)
    schema.validate_profile(profile)
    schema.validate_profile(profile, mem_per_node=4 * GiB)
    assert profile.description and "\n" not in profile.description
    assert len(profile.description) <= 100
    assert len(profile.why.split()) >= 20, "the why should give reasons for the numbers"
    assert profile.distributed, "a profile sets at least one distributed key"


@pytest.mark.parametrize("name", shipped_names())
def test_job_config_matches_expected(name):
    text = dask_config.job_config_yaml(load.load_profile(name))
    assert text == (EXPECTED / f"{name}.yaml").read_text(), (
        f"rendering changed; if intended, regenerate tests/expected/profiles/{name}.yaml "
        f"from dask_config.job_config_yaml")


def test_no_stale_expected_files():
    assert sorted(p.stem for p in EXPECTED.glob("*.yaml")) == shipped_names()


def test_seed_profile_is_the_seed_recommendation():
    profile = load.load_profile("seed")
    assert profile.distributed["worker"]["memory"] == {
        "target": False, "spill": False, "pause": 0.80, "terminate": 0.95}
    assert load.profile_hints(profile)["layout"] == "per-node"


def test_dask_default_profile_equals_the_installed_defaults():
    defaults = schema.dask_defaults()
    profile = load.load_profile("dask-default").distributed
    for name in schema.THRESHOLDS:
        assert profile["worker"]["memory"][name] == defaults["worker"]["memory"][name], name
    assert profile["scheduler"]["allowed-failures"] == defaults["scheduler"]["allowed-failures"]


def test_no_terminate_pauses_but_never_terminates():
    settings = load.load_profile("no-terminate").distributed["worker"]["memory"]
    assert settings["terminate"] is False and 0 < settings["pause"] < 1


def test_large_scale_relaxes_timeouts_and_failures():
    defaults = schema.dask_defaults()
    settings = load.load_profile("large-scale").distributed
    assert settings["scheduler"]["allowed-failures"] > defaults["scheduler"]["allowed-failures"]
    assert set(settings["comm"]["timeouts"]) == {"connect", "tcp"}


PROBE = """
import json, sys
import dask
import distributed  # adds distributed's defaults under the config files, as in a worker

keys = json.loads(sys.argv[1])
print(json.dumps({
    "values": {key: dask.config.get(key) for key in keys},
    "user_key": dask.config.get("distributed.scheduler.work-stealing"),
}))
try:
    import jsonschema, yaml, pathlib
except ImportError:
    sys.exit(0)
schema = yaml.safe_load((pathlib.Path(distributed.__file__).parent /
                         "distributed-schema.yaml").read_text())
jsonschema.validate(dask.config.config["distributed"],
                    schema["properties"]["distributed"])
"""


def test_rendered_profiles_reach_dask_through_dask_config(tmp_path):
    """What a worker sees: a fresh interpreter with DASK_CONFIG at the job config dir reads each
    profile's values, over a conflicting ~/.config/dask, and keeps unrelated user keys."""
    user_home = tmp_path / "user"
    write(user_home / ".config" / "dask" / "distributed.yaml", """\
        distributed:
          scheduler: {allowed-failures: 1, work-stealing: false}
          worker:
            memory: {target: 0.1, spill: 0.2, pause: 0.3, terminate: 0.35}
          comm:
            timeouts: {connect: 1s, tcp: 1s}
        """)
    underscored = write(tmp_path / "underscored.yaml", """\
        description: keys written with underscores, as Dask allows
        distributed:
          scheduler: {allowed_failures: 7}
          nanny:
            pre_spawn_environ: {MALLOC_TRIM_THRESHOLD_: 0}
        """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env["HOME"] = str(user_home)
    runs = []
    for name in [*shipped_names(), str(underscored)]:
        profile = load.load_profile(name)
        config_dir = tmp_path / "jobs" / profile.name / JOB_CONFIG_DIR
        config_dir.mkdir(parents=True)
        (config_dir / dask_config.JOB_CONFIG_FILE).write_text(dask_config.job_config_yaml(profile))
        expected = leaves(profile.distributed)
        proc = subprocess.Popen(
            [sys.executable, "-c", PROBE, json.dumps(sorted(expected))],
            env={**env, "DASK_CONFIG": str(config_dir)}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        runs.append((profile.name, expected, proc))
    for name, expected, proc in runs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{name}: {err}"
        seen = json.loads(out.splitlines()[0])
        assert seen["values"] == expected, name
        assert seen["user_key"] is False, f"{name}: a user key the profile does not set was lost"


# ---------------------------------------------------------------- loading

def test_load_by_name_and_by_path():
    by_name = load.load_profile("seed")
    by_path = load.load_profile(str(by_name.source))
    assert by_name == by_path
    assert by_name.name == "seed" and by_name.source.name == "seed.yaml"


def test_user_profiles_are_found_and_override_shipped(home):
    user_dir = home / ".config" / "dasklaunch" / "profiles"
    write(user_dir / "mine.yml", "description: my own\ndistributed: {worker: {memory: "
                                 "{pause: 0.9}}}\n")
    write(user_dir / "seed.yaml", "description: my seed\n")
    assert load.load_profile("mine").description == "my own"
    assert load.load_profile("seed").description == "my seed"
    entries = {entry.name: entry for entry in load.list_profiles()}
    assert entries["mine"].origin == "user"
    assert entries["seed"].origin == "user, overrides shipped"
    assert entries["conservative"].origin == "shipped"


def test_a_broken_user_profile_is_listed_with_its_error(home):
    write(home / ".config" / "dasklaunch" / "profiles" / "broken.yaml", "- not\n- a mapping\n")
    entries = {entry.name: entry for entry in load.list_profiles()}
    assert "expected a YAML mapping, got a list" in entries["broken"].error
    assert entries["seed"].error is None


def test_a_plain_distributed_yaml_is_a_profile(tmp_path):
    path = write(tmp_path / "distributed.yaml", "distributed:\n  scheduler:\n"
                                                "    allowed-failures: 5\n")
    profile = load.load_profile(str(path))
    schema.validate_profile(profile)
    assert (profile.name, profile.description, profile.hints) == ("distributed", "", {})


def test_bare_word_is_a_name_even_if_a_file_has_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "seed", "description: a stray file\n")
    assert load.load_profile("seed").description != "a stray file"


@pytest.mark.parametrize("text, message", [
    ("nope", "unknown profile 'nope' (known: conservative, dask-default, large-scale, "
             "no-terminate, seed; or give a file path)"),
    ("./nope.yaml", "profile file ./nope.yaml does not exist"),
    ("", "empty profile name"),
])
def test_load_errors(text, message):
    with pytest.raises(UsageError) as err:
        load.load_profile(text)
    assert str(err.value) == message


# ---------------------------------------------------------------- validation (API level; the
# full table of bad files with their exact messages is in test_profile_cli.py)

def profile_of(tmp_path, text) -> load.Profile:
    return load.load_profile(str(write(tmp_path / "p.yaml", text)))


@pytest.mark.parametrize("size", ["12 GB", "12GiB", "12e9", 12e9, 12 * GiB])
def test_sizes_parse(tmp_path, size):
    profile = profile_of(tmp_path, "dasklaunch: {memory-limit: X}\n"
                         "distributed: {worker: {memory: {max-spill: X}}}\n".replace(
                             "X", json.dumps(size)))
    schema.validate_profile(profile, mem_per_node=16 * GiB)
    assert load.profile_hints(profile)["memory_limit"] in (12 * 10**9, 12 * GiB)


def test_underscores_are_dask_spelling_too(tmp_path):
    profile = profile_of(tmp_path, "distributed:\n  scheduler: {allowed_failures: 5}\n"
                                   "  worker: {memory: {max_spill: 1GB}}\n")
    schema.validate_profile(profile)


def test_threshold_order_counts_dask_defaults_for_missing_ones(tmp_path):
    with pytest.raises(UsageError, match=r"pause 0.8 \(Dask's default\) is above terminate 0.5"):
        schema.validate_profile(profile_of(
            tmp_path, "distributed: {worker: {memory: {terminate: 0.5}}}\n"))


def test_false_thresholds_are_skipped_in_the_order(tmp_path):
    schema.validate_profile(profile_of(tmp_path, "distributed: {worker: {memory: "
                                       "{target: false, spill: false, pause: 0.5}}}\n"))


def test_memory_limit_against_allocation(tmp_path):
    profile = profile_of(tmp_path, "dasklaunch: {memory-limit: 3GiB}\n")
    schema.validate_profile(profile)
    schema.validate_profile(profile, mem_per_node=4 * GiB)
    with pytest.raises(UsageError, match="larger than the allocation's 2.00 GiB per node"):
        schema.validate_profile(profile, mem_per_node=2 * GiB)


def test_validation_does_not_mutate_or_import_distributed():
    # distributed's schema is read as a file; sys.modules is checked in a clean interpreter.
    code = ("import sys; from dasklaunch.profiles import load, schema, dask_config\n"
            "for n in ['seed', 'large-scale']: schema.validate_profile(load.load_profile(n))\n"
            "assert 'distributed' not in sys.modules, 'distributed was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------- overrides

def test_overrides_set_nested_keys_with_yaml_values():
    base = load.load_profile("seed")
    profile = load.apply_overrides(base, [
        "worker.memory.pause=0.85", "distributed.scheduler.allowed-failures=5",
        "comm.timeouts.tcp=60s", "dasklaunch.memory_fraction=0.5"])
    assert profile.distributed["worker"]["memory"]["pause"] == 0.85
    assert profile.distributed["scheduler"]["allowed-failures"] == 5
    assert profile.distributed["comm"]["timeouts"]["tcp"] == "60s"
    assert profile.hints["memory-fraction"] == 0.5
    assert base.distributed["worker"]["memory"]["pause"] == 0.80, "the original is untouched"


def test_override_keeps_the_spelling_already_used():
    base = load.Profile("p", Path("p.yaml"), distributed={"scheduler": {"allowed_failures": 1}})
    profile = load.apply_overrides(base, ["scheduler.allowed-failures=4"])
    assert profile.distributed == {"scheduler": {"allowed_failures": 4}}


@pytest.mark.parametrize("assignment, message", [
    ("worker.memory.pause", "--set expects key=value, not 'worker.memory.pause'"),
    ("=1", "--set expects key=value, not '=1'"),
    ("distributed.=1", "--set distributed.: not a config key (e.g. worker.memory.pause=0.85)"),
    ("worker.memory.pause=[", "--set worker.memory.pause is not YAML: line 1: "
                              "expected the node content, but found '<stream end>'"),
    ("worker.memory.pause.x=1", "--set worker.memory.pause.x: distributed.worker.memory.pause "
                                "is 0.8, not a mapping"),
    ("dasklaunch.a.b=1", "--set dasklaunch.a.b: dasklaunch's own profile keys are "
                         "dasklaunch.<layout|memory-fraction|memory-limit|pools|container|"
                         "container-runtime>"),
])
def test_override_errors(assignment, message):
    with pytest.raises(UsageError) as err:
        load.apply_overrides(load.load_profile("seed"), [assignment])
    assert str(err.value) == message


# ---------------------------------------------------------------- hints and sizing

def test_profile_hints():
    assert load.profile_hints(load.load_profile("seed")) == {
        "layout": "per-node", "pools": (), "memory_fraction": 0.9, "memory_limit": None,
        "rmm_pool_size": None, "container": None, "container_runtime": None}
    assert load.profile_hints(load.load_profile("dask-default")) == {
        "layout": None, "pools": (), "memory_fraction": None, "memory_limit": None,
        "rmm_pool_size": None, "container": None, "container_runtime": None}


def test_a_profile_may_describe_pools(tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text("dasklaunch:\n  pools:\n    - cpu:nodes=1\n"
                    "    - {name: gpu, nodes: 2, "
                    "worker-arg: [--lifetime=1h, --lifetime-stagger=5m]}\n")
    hints = load.profile_hints(load.load_profile(str(path)))
    from dasklaunch.domain.pool_spec import parse_pool

    # a mapping becomes the PoolSpec its --pool text would (never text itself)
    assert hints["pools"] == (parse_pool("cpu:nodes=1"), parse_pool(
        "gpu:nodes=2,worker-arg=--lifetime=1h,worker-arg=--lifetime-stagger=5m"))
    path.write_text("dasklaunch:\n  pools:\n    - gpu:nodez=2\n")
    with pytest.raises(UsageError, match="unknown key 'nodez'"):
        load.profile_hints(load.load_profile(str(path)))


NO_CGROUP = {"proc_cgroup": "/nonexistent/cgroup", "physical": 64 * GiB}


@pytest.mark.parametrize("environ, expected", [
    ({"SLURM_MEM_PER_NODE": "2000"}, (2000 * MiB, "SLURM_MEM_PER_NODE=2000")),
    ({"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_ON_NODE": "4"},
     (4000 * MiB, "SLURM_MEM_PER_CPU=1000 x SLURM_CPUS_ON_NODE=4")),
    ({"SLURM_MEM_PER_NODE": "0"}, (64 * GiB, "physical memory")),  # --mem=0: the whole node
    ({}, (64 * GiB, "physical memory")),
])
def test_node_memory_from_slurm(environ, expected):
    assert node_memory.node_memory(environ, **NO_CGROUP) == expected


@pytest.mark.parametrize("environ, message", [
    ({"SLURM_MEM_PER_NODE": "2G"}, "SLURM_MEM_PER_NODE='2G' is not a number of megabytes"),
    ({"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_ON_NODE": "x"},
     "SLURM_CPUS_ON_NODE='x' is not a number"),
])
def test_node_memory_rejects_garbage(environ, message):
    with pytest.raises(UsageError) as err:
        node_memory.node_memory(environ, **NO_CGROUP)
    assert str(err.value) == message


def fake_cgroups(root: Path, proc_lines: str, files: dict[str, str]) -> dict:
    for rel, text in files.items():
        write(root / "sys" / rel, text)
    proc = write(root / "proc-self-cgroup", proc_lines)
    return {"proc_cgroup": str(proc), "cgroup_root": str(root / "sys")}


def test_cgroup_v2_limit_on_an_ancestor_of_the_step(tmp_path):
    # Slurm puts the job's limit on the job's cgroup; the task's own cgroup says "max".
    paths = fake_cgroups(tmp_path, "0::/system.slice/slurmstepd.scope/job_7/step_0/user/task_0\n", {
        "memory.max": "max\n",
        "system.slice/slurmstepd.scope/job_7/memory.max": f"{3 * GiB}\n",
        "system.slice/slurmstepd.scope/job_7/step_0/memory.max": "max\n",
        "system.slice/slurmstepd.scope/job_7/step_0/user/task_0/memory.max": "max\n",
    })
    size, source = node_memory.node_memory({}, physical=64 * GiB, **paths)
    assert size == 3 * GiB
    assert source.startswith("cgroup ") and source.endswith("job_7/memory.max")


def test_cgroup_v1_limit(tmp_path):
    paths = fake_cgroups(tmp_path, "4:memory:/slurm/uid_1/job_7/step_0\n2:cpu:/\n", {
        "memory/memory.limit_in_bytes": "9223372036854771712\n",
        "memory/slurm/uid_1/job_7/memory.limit_in_bytes": f"{5 * GiB}\n",
    })
    assert node_memory.node_memory({}, physical=64 * GiB, **paths)[0] == 5 * GiB


def test_cgroup_namespace_reads_the_mount_root(tmp_path):
    # Inside a cgroup namespace the listed path does not exist under the mount.
    paths = fake_cgroups(tmp_path, "0::/elsewhere/abc\n", {"memory.max": f"{GiB}\n"})
    assert node_memory.node_memory({}, physical=64 * GiB, **paths) == (
        GiB, f"cgroup {tmp_path / 'sys' / 'memory.max'}")


def test_unlimited_or_larger_cgroup_means_physical_memory(tmp_path):
    paths = fake_cgroups(tmp_path, "0::/a\n", {"memory.max": "max\n",
                                               "a/memory.max": f"{128 * GiB}\n"})
    assert node_memory.node_memory({}, physical=64 * GiB, **paths) == (64 * GiB, "physical memory")


def test_slurm_wins_over_cgroup(tmp_path):
    paths = fake_cgroups(tmp_path, "0::/\n", {"memory.max": f"{GiB}\n"})
    assert node_memory.node_memory({"SLURM_MEM_PER_NODE": "2000"}, physical=64 * GiB, **paths)[0] \
        == 2000 * MiB


def test_node_memory_on_this_machine():
    import psutil

    physical = psutil.virtual_memory().total
    limit = node_memory.cgroup_memory_limit()
    expected = limit if limit is not None and limit[0] < physical else \
        (physical, "physical memory")
    assert node_memory.node_memory({}) == expected


# ---------------------------------------------------------------- merging

def test_merge_keeps_unrelated_keys_and_existing_spelling():
    existing = {"logging": {"distributed": "info"},
                "distributed": {"scheduler": {"allowed_failures": 2, "work-stealing": False},
                                "nanny": {"pre-spawn-environ": {"MY_VAR": 1}}}}
    merged, changes = dask_config.merge_config(existing, {"distributed": {
        "scheduler": {"allowed-failures": 9},
        "nanny": {"pre-spawn-environ": {"OMP_NUM_THREADS": 2}},
        "worker": {"memory": {"pause": 0.8}}}})
    assert merged == {"logging": {"distributed": "info"},
                      "distributed": {"scheduler": {"allowed_failures": 9, "work-stealing": False},
                                      "nanny": {"pre-spawn-environ": {"MY_VAR": 1,
                                                                      "OMP_NUM_THREADS": 2}},
                                      "worker": {"memory": {"pause": 0.8}}}}
    assert [(c.key, c.added) for c in changes] == [
        ("distributed.scheduler.allowed_failures", False),
        ("distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS", True),
        ("distributed.worker.memory.pause", True)]
    assert existing["distributed"]["scheduler"]["allowed_failures"] == 2, "input untouched"


def test_merge_of_equal_values_changes_nothing():
    _, changes = dask_config.merge_config({"distributed": {"worker": {"memory": {"pause": 0.8}}}},
                                     {"distributed": {"worker": {"memory": {"pause": 0.80}}}})
    assert changes == []


def test_merge_tells_false_from_zero():
    _, changes = dask_config.merge_config({"a": 0}, {"a": False})
    assert [(c.old, c.new) for c in changes] == [(0, False)]


def test_gpu_keys_are_validated_like_the_rest(tmp_path):
    path = tmp_path / "gpu.yaml"
    path.write_text("distributed:\n  rmm:\n    pool-size: 8000000000\n")
    schema.validate_profile(load.load_profile(str(path)))
    path.write_text("distributed:\n  rmm:\n    pool-size: 0.9\n")
    profile = load.load_profile(str(path))
    schema.validate_profile(profile)
    # what dask-cuda pools get as --rmm-pool-size unless the command line says otherwise
    assert load.profile_hints(profile)["rmm_pool_size"] == "0.9"
    for value, message in (("lots", "'lots' is neither a fraction of the GPU's memory"),
                           ("1.5", "1.5 is 1 byte, not a fraction of the GPU's memory")):
        path.write_text(f"distributed:\n  rmm:\n    pool-size: {value}\n")
        with pytest.raises(UsageError) as err:
            schema.validate_profile(load.load_profile(str(path)))
        assert str(err.value).startswith(f"distributed.rmm.pool-size: {message}")
