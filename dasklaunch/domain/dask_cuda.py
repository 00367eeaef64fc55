"""What dask-cuda's `dask cuda worker` takes, and `dask worker`'s command line turned into its.

dasklaunch shows each `dask cuda worker` one GPU, so each starts one worker (it starts one per
GPU in CUDA_VISIBLE_DEVICES). Its command line is `dask worker`'s less what it lacks: it has
no --nworkers, --no-nanny, --lifetime or --preload-nanny, and it reads an option it does not
declare as the scheduler's address (then fails: "The scheduler address can't start with '-'").
"""

from __future__ import annotations

CUDA_WORKER = ["-m", "dask", "cuda", "worker"]
# dasklaunch needs 26.08 or later: from there `dask cuda worker` waits for its signals with
# distributed's wait_for_signals, which the node launcher's shield replaces (launch/shield.py)
MINIMUM_VERSION = (26, 8)
# The options `dask cuda worker` declares (dask_cuda/cli.py, 26.08-26.10).
OPTIONS = frozenset({
    "--scheduler-file", "--tls-ca-file", "--tls-cert", "--tls-key", "--host", "--worker-port",
    "--listen-address", "--contact-address", "--nthreads", "--name", "--memory-limit",
    "--device-memory-limit", "--enable-cudf-spill", "--disable-cudf-spill",
    "--cudf-spill-stats", "--rmm-pool-size", "--rmm-maximum-pool-size", "--rmm-managed-memory",
    "--no-rmm-managed-memory", "--rmm-async", "--no-rmm-async", "--set-rmm-allocator-for-libs",
    "--rmm-release-threshold", "--rmm-log-directory", "--rmm-track-allocations",
    "--no-rmm-track-allocations", "--pid-file", "--resources", "--dashboard", "--no-dashboard",
    "--dashboard-address", "--local-directory", "--protocol", "--interface", "--preload",
    "--death-timeout", "--dashboard-prefix", "--enable-tcp-over-ucx",
    "--disable-tcp-over-ucx", "--enable-infiniband", "--disable-infiniband",
    "--enable-nvlink", "--disable-nvlink", "--enable-rdmacm", "--disable-rdmacm",
    "--worker-class", "--pre-import", "--multiprocessing-method",
})
# `dask worker` options that dasklaunch itself moves or drops for it
TRANSLATED = {"--nworkers": "drop", "--preload-nanny": "environment"}
# The nanny's preload, which `dask cuda worker` has no option for: Dask's config gives it.
NANNY_PRELOAD_VARIABLE = "DASK_DISTRIBUTED__NANNY__PRELOAD"


def is_worker(argv: list[str]) -> bool:
    """Whether `argv` (any Python's) runs `dask cuda worker`."""
    return argv[1:5] == CUDA_WORKER


def undeclared(args: tuple[str, ...] | list[str]) -> list[str]:
    """The options among `args` (`dask worker` arguments) that `dask cuda worker` lacks."""
    return [arg.partition("=")[0] for arg in args
            if arg.startswith("--") and arg.partition("=")[0] not in OPTIONS
            and arg.partition("=")[0] not in TRANSLATED]


def worker_command(python: str, options: list[str] | tuple[str, ...],
                   user_args: list[str] | tuple[str, ...] = (),
                   tail: list[str] | tuple[str, ...] = ()) -> list[str]:
    """`dask cuda worker`'s command line: dasklaunch's `options` for the plan (the same
    scheduler file, threads, memory limit, network, TLS and directory as `dask worker`'s, no
    --nworkers), then the user's own `dask worker` arguments without what dask-cuda lacks
    (--nworkers is dropped, the nanny's preloads go to the environment: worker_env), then
    `tail` (resources, worker class, dask-cuda's own options)."""
    return [python, *CUDA_WORKER, *options, *translated(user_args), *tail]


def translated(user_args: list[str] | tuple[str, ...]) -> list[str]:
    """The user's `dask worker` arguments as `dask cuda worker` takes them (TRANSLATED)."""
    kept = []
    args = iter(user_args)
    for arg in args:
        flag, eq, _ = arg.partition("=")
        if flag in TRANSLATED:
            if not eq:
                next(args, None)
        else:
            kept.append(arg)
    return kept


def worker_env(worker_argv: list[str]) -> dict[str, str]:
    """The environment that gives `dask cuda worker`'s nannies the preloads that `dask worker`
    got as --preload-nanny (either spelling)."""
    preloads = []
    for index, arg in enumerate(worker_argv):
        flag, eq, value = arg.partition("=")
        if flag == "--preload-nanny":
            if eq:
                preloads.append(value)
            elif index + 1 < len(worker_argv):
                preloads.append(worker_argv[index + 1])
    return {NANNY_PRELOAD_VARIABLE: repr(preloads)} if preloads else {}


def parse_version(text: str) -> tuple[int, ...]:
    """`26.10.00` -> (26, 10, 0); pre-release tails (`26.10.00a12`) are dropped."""
    parts = []
    for part in text.split("."):
        digits = "".join(c for c in part if c.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
        if not part.isdigit():
            break
    return tuple(parts)


def unusable(version: str | None) -> str | None:
    """Why GPU pools cannot use the installed dask-cuda (`version`, None: not installed)."""
    if version is None:
        return "dask-cuda is not installed (pip install 'dasklaunch[gpu]')"
    if parse_version(version) < MINIMUM_VERSION:
        return (f"dask-cuda {version} is older than "
                f"{'.'.join(f'{n:02d}' if i else str(n) for i, n in enumerate(MINIMUM_VERSION))}"
                f", which dasklaunch needs")
    return None
