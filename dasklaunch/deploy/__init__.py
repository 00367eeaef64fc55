"""The notebook cluster: a `distributed.deploy.Cluster` on Slurm (imported lazily from
`dasklaunch`, since it imports distributed)."""
