# dasklaunch environment for job ${job_id} (${backend} backend); works in bash, zsh and sh:
#   . ${env_file}    or    eval "$$(dasklaunch env)"
export DASK_SCHEDULER_FILE=${scheduler_file}
export SCHEDULER_FILE=${scheduler_file}
export DASK_SCHEDULER_ADDRESS=${scheduler_address}
export DASKLAUNCH_STATE_DIR=${state_dir}
${extra_exports}
