"""Memory profiles: `load` (find, read, override), `schema` (validate against distributed's
config schema), `dask_config` (render a job's DASK_CONFIG file, merge into ~/.config/dask), and
`jobqueue` (dask-jobqueue's `jobqueue.slurm` settings as defaults)."""
