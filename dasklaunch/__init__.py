"""dasklaunch: a Slurm-native launcher and lifecycle manager for Dask clusters."""

__version__ = "0.1.0"
