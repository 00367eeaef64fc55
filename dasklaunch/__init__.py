"""dasklaunch: a Slurm-native launcher and lifecycle manager for Dask clusters.

`connect()`, `cluster()` and `Cluster` are imported lazily so that `import dasklaunch` (and the CLI)
stays fast and never imports distributed.
"""

__version__ = "0.2.0"
__all__ = ["Cluster", "connect", "cluster", "security_for", "__version__"]


def __getattr__(name: str):
    if name in ("connect", "cluster", "security_for"):
        from . import api

        return getattr(api, name)
    if name == "Cluster":
        from .deploy.notebook import Cluster

        return Cluster
    raise AttributeError(f"module 'dasklaunch' has no attribute {name!r}")
