"""The use cases: up, status, restart-workers, down, env, supervise, scale-out, batch, logs.
Each sees launchers only through the Launcher interface (launch/) and Slurm only through
slurm/."""
