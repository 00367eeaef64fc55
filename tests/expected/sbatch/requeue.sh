#!/bin/bash
#SBATCH --job-name=dasklaunch
#SBATCH --nodes=4
#SBATCH --open-mode=append
#SBATCH --partition=low
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --time=04:00:00
#
# Rendered by `dasklaunch batch`. It brings a Dask cluster up, runs the command, and always
# brings the cluster down: when the command ends, on scancel, and 300 s before the
# walltime, when Slurm sends SIGUSR1 to this shell. It exits with the command's exit code.
# --requeue: on SIGUSR1 (the walltime margin, or preemption where Slurm sends the job's signal
# then) it brings the cluster down and requeues the job; the next run starts afresh and runs
# the command again. Output of every run is appended to the same file.

# No `set -e`: every way out below is explicit, so that `down` always runs and the exit code
# is the command's, not that of whichever line failed last.
set -u

# The installation that rendered this script, so compute nodes run the same code; an array,
# not a function, so that a child started with & is dasklaunch itself and gets our signals.
if [[ -n "${DASKLAUNCH:-}" ]]; then
    dasklaunch=("$DASKLAUNCH")
else
    dasklaunch=(/opt/venv/bin/dasklaunch)
fi

say() { echo "dasklaunch batch: $*" >&2; }

phase="setup"
signalled=""
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

# shellcheck disable=SC2317  # trap handlers: bash calls them, no line here does
cluster_down() {
    local code=$?
    # Ignored here, ignored by `down` too: a second signal must not cut the teardown short.
    trap '' TERM INT HUP USR1
    say "bringing the cluster down"
    if "${dasklaunch[@]}" down; then
        say "cluster down"
    else
        say "warning: dasklaunch down exited $?"
    fi
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
    exit "$code"
}

# shellcheck disable=SC2317
on_signal() {
    trap '' TERM INT HUP USR1
    # shellcheck disable=SC2034  # read after `down` in scripts that requeue
    signalled=$1
    say "SIG$1 during $phase ($3): stopping it and the cluster"
    # `jobs -p`, not $!: it also knows a child forked an instant before the signal arrived.
    local children
    children=$(jobs -p)
    if [[ -n "$children" ]]; then
        # shellcheck disable=SC2086
        kill -TERM $children 2>/dev/null
        # `up` rolls back on SIGTERM while holding the job lock, which `down` needs. The command
        # is not waited for: one that ignores SIGTERM must not use up the margin.
        if [[ $phase == up ]]; then wait; fi
    fi
    exit "$2"
}

trap cluster_down EXIT
trap 'on_signal TERM 143 "scancel or the end of the job"' TERM
trap 'on_signal INT 130 "Ctrl-C"' INT
trap 'on_signal HUP 129 "hangup"' HUP
trap on_requeue_signal USR1

# Children run in the background and are waited for: bash runs a trap only between commands,
# so a foreground child would delay the walltime SIGTERM until it returned.
phase="up"
"${dasklaunch[@]}" up --interface ib0 &
wait $!
code=$?
if (( code != 0 )); then
    say "dasklaunch up failed (exit $code)"
    exit "$code"
fi

env_file=$("${dasklaunch[@]}" env --path) || exit
# shellcheck disable=SC1090
source "$env_file"

argv=(python3 analysis.py --skip-done)
say "running: ${argv[*]}"
phase="command"
# Explicitly from our stdin: a background command would otherwise read /dev/null.
"${argv[@]}" <&0 &
wait $!
code=$?
say "command exited $code"
exit "$code"
