"""Slurm's commands: every srun, scancel, squeue, sbatch and scontrol command line is built and
its output parsed in `commands` (pure), and run in `queue` (through runtime.proc)."""
