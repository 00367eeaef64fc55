requeue=0
why=""

# shellcheck disable=SC2317
preempted() {
    # Slurm sets PreemptTime when it selects the job for preemption (None until then).
    local facts
    [[ -n "${SLURM_JOB_ID:-}" ]] || return 1
    facts=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null) || return 1
    [[ $facts =~ PreemptTime=([^[:space:]]+) ]] && [[ ${BASH_REMATCH[1]} != None ]]
}

# shellcheck disable=SC2317
slurm_requeues_preempted() {
    # 24.05 and later requeue a preempted job that ends within its grace time (a requeue of
    # ours on top counts twice); 22.05 ends it as COMPLETED
    local version
    version=$(scontrol --version 2>/dev/null) || return 1
    [[ $version =~ ([0-9]+)\.([0-9]+) ]] || return 1
    (( 10#${BASH_REMATCH[1]} * 100 + 10#${BASH_REMATCH[2]} >= 2405 ))
}

# shellcheck disable=SC2317
on_requeue_signal() {
    requeue=1
    if preempted; then why="preempted"; else why="time limit near"; fi
    on_signal USR1 138 "$why: the job will be requeued"
}

if [[ -n "${SLURM_RESTART_COUNT:-}" && "${SLURM_RESTART_COUNT}" != 0 ]]; then
    say "job ${SLURM_JOB_ID:-?} runs again (restart ${SLURM_RESTART_COUNT}): a new cluster"
fi
