"""The command line: the typer app (`app`), one module per command group, the fast entry path
(`entry`) and Dask's `dask launch` hook (`dask_cli`). Commands parse options and call one
function of ops/; `app` turns domain errors into one stderr line and an exit code."""
