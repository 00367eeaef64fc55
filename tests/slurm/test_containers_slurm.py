"""The scheduler and workers in a container image, on the real testbed, with the host's Podman
(the 22.05 testbed; the 24.11 and 26.05 roots carry no container runtime, so there it is
skipped). The image is the one scripts/container-image builds: Debian trixie and its Python
3.13, with this checkout's dasklaunch installed, where the host runs bookworm and another
Python, so a worker can tell from inside that it runs in the image.

Podman's containers live under conmon, outside the srun task that started them: these tests
look for what a container leaves behind (a container, a conmon, an overlay mount) after a
drain, a SIGKILLed step and `down`.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from slurmbed import NODES, ROOT, processes_mentioning, wait_no_processes

IMAGE_SCRIPT = ROOT / "scripts" / "container-image"
HOST_OS = platform.freedesktop_os_release()["PRETTY_NAME"]


def podman(*args: str, env: dict | None = None, timeout: float = 120
           ) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def podman_confs(path: Path):
    """containers.conf files for this machine kind, the highest limits first: Podman's defaults
    raise the containers' open files and processes limits (1048576, 4194304), which needs
    CAP_SYS_RESOURCE, and this sandbox's root lacks it (as Apptainer's default mode finds);
    the highest it may set is not always its own hard limit (processes: 32768 here, under a
    hard limit of 96367), so the fixture tries these in turn. crun refuses the sandbox's cgroup
    layout (v1 beside a v2 tmpfs); runc takes it. A site's Podman needs none of this; a user
    whose does sets CONTAINERS_CONF as here (docs/containers.md)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nproc = 32768 if nproc == resource.RLIM_INFINITY else min(nproc, 32768)
    runtime = 'runtime = "runc"\n' if shutil.which("runc") else ""
    for files, procs in ((nofile, nproc), (min(nofile, 16384), min(nproc, 16384)),
                         (min(nofile, 4096), min(nproc, 4096))):
        path.write_text(f'[containers]\ndefault_ulimits = ["nofile={files}:{files}", '
                        f'"nproc={procs}:{procs}"]\n[engine]\n{runtime}')
        yield path


def build(*args: str) -> dict:
    """scripts/container-image ARGS (needs root and debootstrap): its KEY=VALUE lines."""
    if Path("/.dasklaunch-root").exists():
        pytest.skip("the container tests run on the host, on the 22.05 testbed")
    missing = [tool for tool in ("podman", "debootstrap") if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        why = (f"{' and '.join(missing)} not installed" if missing
               else "building the image needs root")
        if os.environ.get("DASKLAUNCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"{why}; scripts/test installs Podman and debootstrap as root")
        pytest.skip(why)
    built = subprocess.run([str(IMAGE_SCRIPT), *args], capture_output=True, text=True,
                           timeout=1200, stdin=subprocess.DEVNULL)
    assert built.returncode == 0, built.stderr[-3000:]
    print("\n" + built.stderr.strip())
    return dict(line.split("=", 1) for line in built.stdout.split())


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> dict:
    """The test image in Podman, and the environment its runs need."""
    facts = build("build")
    for conf in podman_confs(tmp_path_factory.mktemp("podman") / "containers.conf"):
        env = {"CONTAINERS_CONF": str(conf)}
        probe = podman("run", "--rm", facts["podman"], "true", env=env)
        if probe.returncode == 0:
            break
    assert probe.returncode == 0, f"podman cannot run the test image: {probe.stderr}"
    return {"name": facts["podman"], "env": env, "runtime": "podman",
            "args": ["--container-runtime", "podman"]}


@pytest.fixture(scope="module")
def apptainer_image() -> dict:
    """The same image as Apptainer runs it (its directory, a sandbox image), with the
    `apptainer` command scripts/container-image makes: Apptainer 1.4.5 from Debian sid (the
    host's glibc is too old for it), entered with pivot_root; --userns, as this sandbox needs."""
    facts = build("build")
    path = build("apptainer")["path"]
    return {"name": facts["dir"], "env": {"PATH": f"{path}:{os.environ['PATH']}"},
            "runtime": "apptainer",
            "args": ["--container-runtime", "apptainer", "--container-arg=--userns"]}


@pytest.fixture(params=["podman", "apptainer"])
def runtime_image(request) -> dict:
    return request.getfixturevalue("image" if request.param == "podman" else "apptainer_image")


def leftovers(job_id: str) -> dict:
    """What the job's containers could leave: containers (running or not) named for the job,
    their conmon processes, overlay mounts of their root filesystems."""
    names = podman("ps", "--all", "--format", "{{.Names}}").stdout.split()
    mine = [name for name in names if name.startswith(f"dasklaunch-{job_id}.")]
    conmons = [cmd for _, cmd in processes_mentioning(f"dasklaunch-{job_id}.")
               if "conmon" in cmd]
    ids = podman("ps", "--all", "--quiet", "--no-trunc").stdout.split()
    return {"containers": mine, "conmon": conmons, "all_containers": ids}


def overlay_mounts() -> list[str]:
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[2] == "overlay" and "/containers/storage/" in line.split()[1]]


# The driver's client runs on the host (bookworm, its Python), the cluster in the image (Python
# 3.13): code shipped by value (a lambda, a function of the driver) does not load in another
# Python, so everything sent here is a function of the standard library or of dask, which
# pickle sends by name (see docs/containers.md: a client uses the image's Python).
CLIENT = '''
import operator, platform
import dask.bag as db
import dasklaunch

PARTS = 12

def inside(client):
    run = lambda f: client.run(f)
    names = {a: i["name"] for a, i in client.scheduler_info()["workers"].items()}
    oses, pythons, hosts = (run(platform.freedesktop_os_release), run(platform.python_version),
                            run(socket.gethostname))
    workers = sorted(({"os": oses[a]["PRETTY_NAME"], "python": pythons[a], "host": hosts[a],
                       "name": names[a]} for a in names), key=lambda w: w["host"])
    scheduler = {"os": client.run_on_scheduler(platform.freedesktop_os_release)["PRETTY_NAME"],
                 "python": client.run_on_scheduler(platform.python_version)}
    return workers, scheduler

def persist(client, leaving, staying):
    names = {i["name"]: a for a, i in client.scheduler_info()["workers"].items()}
    a = [addr for name, addr in names.items() if leaving(name)]
    b = [addr for name, addr in names.items() if staying(name)]
    futures = [client.submit(list, range(i * 1000, (i + 1) * 1000), workers=a if i % 2 else b,
                             allow_other_workers=True, key=f"part-{i}") for i in range(PARTS)]
    client.gather(futures)
    return futures

def outcome(client, futures):
    held = client.who_has(futures)
    out["held"] = sum(1 for ws in held.values() if ws)
    total = sum(client.gather([client.submit(sum, f) for f in futures]))
    out["right"] = total == sum(range(PARTS * 1000))
'''


def test_cluster_in_an_image_drains_restarts_and_leaves_nothing(slurm, runtime_image):
    image = runtime_image
    mounts_before = overlay_mounts()
    env = image["env"]
    result = slurm.salloc(CLIENT + f'''
start = time.time()
facts = json.loads(dl("up", "--interface", "lab0", "--container", {image["name"]!r},
                      *{image["args"]!r}, "--pool", "a:nodes=1", "--pool", "b:nodes=2",
                      "--json").stdout)
out["ready_s"] = time.time() - start
out["up_stderr"] = facts
with dasklaunch.connect(timeout="30s") as client:
    out["workers"], out["scheduler"] = inside(client)
    out["client_python"] = platform.python_version()
    # the seed's computation, small: count the error lines of a bag of log lines
    lines = [f"{{'ERROR' if i % 5 == 0 else 'INFO'}} host{{i % 7}} message {{i}}"
             for i in range(60)]
    is_error = operator.methodcaller("startswith", "ERROR")
    errors = db.from_sequence(lines, npartitions=12).filter(is_error)
    out["errors"] = errors.count().compute()
    # a drain that moves keys: pool a restarts, its keys go to pool b
    futures = persist(client, lambda n: n.startswith("a-"), lambda n: n.startswith("b-"))
    out["restart_a"] = json.loads(dl("restart-workers", "--pool", "a", "--json").stdout)
    outcome(client, futures)
    out["drains"] = json.loads(dl("status", "--json").stdout)["drains"]
    client.cancel(futures)
    # SIGKILL to pool b's step (an OOM storm): the step ends, and its containers with it
    # (Podman's run under conmon, outside the step: their watcher ends them; Apptainer's are
    # processes of the step)
    pool_b = [p for p in record()["pools"] if p["pool"] == "b"][0]
    listed = sh("squeue", "--noheader", "--steps", "--format=%i %j").splitlines()
    step = [s.split()[0] for s in listed if s.split()[1] == pool_b["name"]][0]
    sh("scancel", "--signal=KILL", step)
    killed = "dasklaunch-" + step + "."
    start = time.time()
    deadline = start + 30
    names = []
    while {image["runtime"]!r} == "podman" and time.time() < deadline:
        names = sh("podman", "ps", "--all", "--format", "{{{{.Names}}}}").split()
        if not any(name.startswith(killed) for name in names):
            break
        time.sleep(0.2)
    out["containers_gone_s"] = time.time() - start
    out["after_kill"] = sorted(names)
    while time.time() < deadline:
        if json.loads(dl("status", "--json").stdout)["pools"][1]["state"] == "exited":
            break
        time.sleep(0.5)
    out["killed_step"] = step
    out["restart_b"] = json.loads(dl("restart-workers", "--pool", "b", "--json").stdout)
    if {image["runtime"]!r} == "podman":
        out["after_restart"] = sorted(sh("podman", "ps", "--format", "{{{{.Names}}}}").split())
    else:
        out["after_restart"] = []
    out["workers_after"] = len(client.scheduler_info()["workers"])
dl("down")
''', "-N3", "-n3", timeout=420, env=env)
    job = result["job_id"]
    print(f"\ncontainer figures ({image['runtime']}): up to ready {result['ready_s']:.1f} s "
          f"(3 nodes, 2 pools); SIGKILLed step's containers gone "
          f"{result['containers_gone_s']:.1f} s after scancel; restart-workers --pool a "
          f"{result['restart_a']}; drains {result['drains']}")
    image_os = {w["os"] for w in result["workers"]} | {result["scheduler"]["os"]}
    assert image_os == {"Debian GNU/Linux 13 (trixie)"} and HOST_OS not in image_os
    pythons = {w["python"] for w in result["workers"]} | {result["scheduler"]["python"]}
    assert len(pythons) == 1 and pythons != {result["client_python"]}, pythons
    assert sorted(w["host"] for w in result["workers"]) == NODES
    assert result["errors"] == 12
    assert result["held"] == 12 and result["right"], result
    assert result["drains"]["keys_moved"] == 6 and result["drains"]["keys_lost"] == 0
    killed = "dasklaunch-" + result["killed_step"] + "."
    assert not any(name.startswith(killed) for name in result["after_kill"]), result
    assert not any(name.startswith(killed) for name in result["after_restart"]), result
    assert result["restart_b"]["workers"] == 2 and result["workers_after"] == 3
    assert slurm.job_gone(job)
    left = leftovers(job)
    assert left["containers"] == [] and left["conmon"] == [], left
    assert overlay_mounts() == mounts_before
    assert wait_no_processes(str(slurm.state_dir)) == []


def derived(image: dict, tag: str, script: str) -> str:
    """A small image from the test image, with `script` run in it (podman commit)."""
    name = f"localhost/dasklaunch-test-{tag}:latest"
    work = f"dasklaunch-test-build-{tag}"
    podman("rm", "--force", "--ignore", work)
    made = podman("run", "--name", work, image["name"], "sh", "-c", script, env=image["env"])
    assert made.returncode == 0, made.stderr
    committed = podman("commit", "--quiet", work, name, env=image["env"])
    podman("rm", "--force", "--ignore", work)
    assert committed.returncode == 0, committed.stderr
    return name


SITE = "/usr/local/lib/python3.13/dist-packages"


def test_bad_images_and_runtimes_are_one_line_each_and_start_nothing(slurm, image):
    uninstall = "pip uninstall --yes --break-system-packages"
    no_dasklaunch = derived(image, "no-dasklaunch", f"{uninstall} dasklaunch")
    no_dask = derived(image, "no-dask", f"{uninstall} dask distributed")
    metadata = f"{SITE}/dasklaunch-*.dist-info/METADATA"
    other = derived(image, "other-version", f"sed -i 's/^Version: .*/Version: 0.0.1/' {metadata}")
    cases = {"missing": ["--container", "localhost/no-such-image:1", "--container-runtime",
                         "podman"],
             "no_runtime": ["--container", image["name"], "--container-runtime", "apptainer"],
             "no_dasklaunch": ["--container", no_dasklaunch, "--container-runtime", "podman"],
             "no_dask": ["--container", no_dask, "--container-runtime", "podman"],
             "other_version": ["--container", other, "--container-runtime", "podman"]}
    result = slurm.salloc(f'''
out["runs"] = {{}}
for case, args in {cases!r}.items():
    r = dl("up", "--interface", "lab0", *args, check=False)
    out["runs"][case] = {{"rc": r.returncode, "stderr": r.stderr.strip().splitlines(),
                          "steps": steps(), "state": os.path.exists(os.path.join(
                              os.environ["DASKLAUNCH_STATE_DIR"], "state.json"))}}
''', "-N3", "-n3", timeout=300, env=image["env"])
    runs = result["runs"]
    for case, run in runs.items():
        assert run["rc"] == 2 and len(run["stderr"]) == 1, (case, run)
        assert run["stderr"][0].startswith("dasklaunch: error: "), (case, run)
        assert run["steps"] == [] and not run["state"], (case, run)
    assert "no-such-image" in runs["missing"]["stderr"][0]
    assert "apptainer is not installed" in runs["no_runtime"]["stderr"][0]
    assert "has no dasklaunch" in runs["no_dasklaunch"]["stderr"][0]
    assert "has no dask and no distributed" in runs["no_dask"]["stderr"][0]
    assert "has dasklaunch 0.0.1" in runs["other_version"]["stderr"][0]
    assert leftovers(result["job_id"])["containers"] == []
    print("\nrefusals:\n" + "\n".join(f"  {case}: {run['stderr'][0]}"
                                      for case, run in runs.items()))
    for name in (no_dasklaunch, no_dask, other):
        podman("rmi", "--force", name)


def test_dry_run_shows_the_podman_command_lines(slurm, image):
    result = slurm.salloc(f'''
r = dl("up", "--interface", "lab0", "--container", {image["name"]!r}, "--container-runtime",
       "podman", "--dry-run")
out["text"] = r.stdout
''', "-N3", "-n3", timeout=120, env=image["env"])
    text = result["text"]
    assert "/podman --rm --init --network host --ipc host" in text, text   # after the lock dir
    # (the image's python3: --dry-run runs no check, which would find its path)
    assert f"{image['name']} python3 -m dasklaunch.launch.container_watch -- python3 -m" in text
    assert sys.executable not in result["text"].split(image["name"], 1)[1].splitlines()[0]
