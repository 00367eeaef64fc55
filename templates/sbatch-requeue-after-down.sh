    # The requeue comes last: Slurm ends this run at once. A command that failed because the
    # job is being preempted (its steps got SIGTERM) comes back too.
    if (( ! requeue )) && [[ -z $signalled ]] && (( code != 0 )) && preempted; then
        requeue=1
        why="preempted"
    fi
    if (( requeue )) && [[ $why == preempted ]] && slurm_requeues_preempted; then
        say "job ${SLURM_JOB_ID:-} is preempted: Slurm requeues it as this run ends"
    elif (( requeue )); then
        say "requeueing job ${SLURM_JOB_ID:-}"
        if ! scontrol requeue "${SLURM_JOB_ID:-}"; then
            say "warning: scontrol requeue ${SLURM_JOB_ID:-} failed; the job ends here"
        fi
    fi
