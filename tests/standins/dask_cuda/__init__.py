"""A stand-in for dask-cuda's `dask cuda worker`, for machines without NVIDIA GPUs.

It takes the command line dasklaunch gives real dask-cuda, does what matters to dasklaunch the
way dask-cuda does (one worker per GPU in CUDA_VISIBLE_DEVICES; the nanny's preload from Dask's
config; a name only when it starts one worker), records dask-cuda's own options in each
worker's environment (STANDIN_DASK_CUDA, JSON) for tests to read back, and runs `dask worker`
in its own process, waiting for signals through `dask_cuda.cli.wait_for_signals` as dask-cuda
does.
It is found through a `dask_cli` entry point, as the real one is (`python -m dask cuda worker`).
"""
