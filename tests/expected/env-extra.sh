# dasklaunch environment for job 123 (slurm backend); works in bash, zsh and sh:
#   . '/scratch/me/dl 123/env.sh'    or    eval "$(dasklaunch env)"
export DASK_SCHEDULER_FILE='/scratch/me/dl 123/scheduler.json'
export SCHEDULER_FILE='/scratch/me/dl 123/scheduler.json'
export DASK_SCHEDULER_ADDRESS=tcp://10.0.0.1:8786
export DASKLAUNCH_STATE_DIR='/scratch/me/dl 123'
export A_QUOTE='it'"'"'s'
export DASK_CONFIG='/scratch/me/dl 123/dask'
