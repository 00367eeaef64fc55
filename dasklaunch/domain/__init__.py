"""Pure logic: settings, units, the allocation and node memory, the worker plan, the Dask
command lines and environments, and the renderers. No subprocess, no writes, no Dask imports."""
