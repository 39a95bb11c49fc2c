#!/usr/bin/env bash
# Stops the test cluster of setup.sh: cancels its jobs, ends slurmd, slurmctld and munged (by pid file).
# Idempotent; leaves the packages and /etc/slurm/slurm.conf in place so the next setup.sh is fast.
set -uo pipefail

[[ $(id -u) -eq 0 ]] || { echo "stop.sh must run as root" >&2; exit 1; }
MARKER="# written by unetflow tests/slurm/setup.sh"
if [[ -e /etc/slurm/slurm.conf ]] && ! grep -qF "$MARKER" /etc/slurm/slurm.conf; then
    echo "/etc/slurm/slurm.conf was not written by setup.sh: not stopping this machine's SLURM" >&2
    exit 1
fi

# Every job of the test cluster (they are all the tests').
if command -v squeue >/dev/null; then
    mapfile -t JOBS < <(timeout 10 squeue --noheader --format=%i 2>/dev/null)
    [[ ${#JOBS[@]} -gt 0 ]] && timeout 10 scancel "${JOBS[@]}" 2>/dev/null
fi

stop() {
    local name=$1 pidfile=$2 pid
    pid=$(cat "$pidfile" 2>/dev/null) || return 0
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid"
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || { echo "stopped $name"; return 0; }; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null
    echo "killed $name (did not stop within 10 s)"
}
stop slurmd /run/slurm/slurmd.pid
stop slurmctld /run/slurm/slurmctld.pid
stop munged /run/munge/munged.pid
exit 0
