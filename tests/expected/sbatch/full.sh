#!/bin/bash
#SBATCH --account=proj123
#SBATCH --constraint='haswell&ib'
#SBATCH --exclusive
#SBATCH --job-name=analysis
#SBATCH --mail-type=END,FAIL
#SBATCH --mem=0
#SBATCH --nodes=16
#SBATCH --ntasks-per-node=8
#SBATCH --output=/scratch/me/%x-%j.out
#SBATCH --partition=batch
#SBATCH --qos=normal
#SBATCH --signal=B:TERM@300
#SBATCH --time=02:00:00
#SBATCH -wnid0001
#
# Rendered by `dasklaunch batch`. It brings a Dask cluster up, runs the command, and always
# brings the cluster down: when the command ends, on scancel, and 300 s before the
# walltime, when Slurm sends SIGTERM to this shell. It exits with the command's exit code.

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

export DASKLAUNCH_STATE_DIR='/scratch/me/dl state'
say() { echo "dasklaunch batch: $*" >&2; }

phase="setup"
signalled=""

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
trap 'on_signal TERM 143 "walltime margin or scancel"' TERM
trap 'on_signal INT 130 "Ctrl-C"' INT
trap 'on_signal HUP 129 "hangup"' HUP

# Children run in the background and are waited for: bash runs a trap only between commands,
# so a foreground child would delay the walltime SIGTERM until it returned.
phase="up"
"${dasklaunch[@]}" up --interface ib0 --per-node --worker-arg=--lifetime=2h &
wait $!
code=$?
if (( code != 0 )); then
    say "dasklaunch up failed (exit $code)"
    exit "$code"
fi

env_file=$("${dasklaunch[@]}" env --path) || exit
# shellcheck disable=SC1090
source "$env_file"

argv=(python3 analysis.py --input '/data/run 1')
say "running: ${argv[*]}"
phase="command"
# Explicitly from our stdin: a background command would otherwise read /dev/null.
"${argv[@]}" <&0 &
wait $!
code=$?
say "command exited $code"
exit "$code"
