"""Launchers: how steps are started, watched and stopped (`base.Launcher`), by Slurm's srun
(`slurm`), on this machine (`local`, with `localstep` standing in for srun), or in process for
tests (`inprocess`); `factory` picks one and reads the allocation."""
