"""Launchers: how steps are started, watched and stopped (`base.Launcher`), by Slurm's srun
(`slurm`) or on this machine (`local`, with `localstep` standing in for srun; the tests add an
in-process one); `factory` picks one and reads the allocation."""
