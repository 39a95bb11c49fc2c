#!/usr/bin/env bash
# A one-node SLURM test cluster on this machine (Debian/Ubuntu, as root): installs slurm-wlm and munge
# with apt when missing, writes /etc/slurm/slurm.conf for this host, starts munged, slurmctld and slurmd,
# and waits until the node is idle. Idempotent: a second call with the cluster up only checks it. Stop it
# with stop.sh.
#
# No slurmdbd: job status comes from `squeue --states=all`, which lists finished jobs for MinJobAge seconds
# (the test profile sets `slurm-status-command: squeue`). No cgroups (proctrack/linuxproc, task/none) so it
# runs in a container; no GRES, so a GPU request is refused at submission like on a cluster without GPUs.
#
# Environment: SLURM_SETUP_TIMEOUT (seconds to wait for the node, default 60).
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARKER="# written by unetflow tests/slurm/setup.sh"
TIMEOUT=${SLURM_SETUP_TIMEOUT:-60}
LOGDIR=/var/log/slurm
START=$(date +%s%N)

fail() {
    echo "slurm setup FAILED: $*" >&2
    for log in "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log" /var/log/munge/munged.log; do
        if [[ -s $log ]]; then
            echo "--- last lines of $log" >&2
            grep -v -e pmix -e 'MPI: Cannot' "$log" | tail -n 8 >&2
        fi
    done
    exit 1
}

elapsed() {
    local ms=$((($(date +%s%N) - START) / 1000000))
    printf '%d.%01d' $((ms / 1000)) $((ms % 1000 / 100))
}

[[ $(id -u) -eq 0 ]] || fail "must run as root (it installs packages and starts daemons); run: sudo $0"

# 1. Packages.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
    || ! command -v sbatch >/dev/null; then
    command -v apt-get >/dev/null || fail "slurmctld/slurmd/munged are missing and there is no apt-get"
    echo "installing slurm-wlm and munge with apt-get ..."
    export DEBIAN_FRONTEND=noninteractive
    APT_LOG=/tmp/unetflow-slurm-apt.log
    install_packages() { apt-get install -y -qq --no-install-recommends slurm-wlm munge >>"$APT_LOG" 2>&1; }
    : >"$APT_LOG"
    if ! install_packages; then
        apt-get update -qq >>"$APT_LOG" 2>&1 || true
        install_packages || fail "apt-get install slurm-wlm munge failed ($APT_LOG): $(tail -n 3 "$APT_LOG")"
    fi
fi

# 2. Configuration (never overwrite a slurm.conf that this script did not write).
if [[ -e $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
    fail "$CONF exists and was not written by this script: this machine has its own SLURM (use or move it)"
fi
HOST=$(hostname -s)
CPUS=$(nproc)
# RealMemory a little below what slurmd sees, else the node is drained with "Low RealMemory".
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
DEF_MEM=$(( MEM_MB / CPUS < 1000 ? MEM_MB / CPUS : 1000 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOGDIR" /run/slurm
NEW=$(mktemp)
cat >"$NEW" <<EOF
$MARKER
ClusterName=unetflow-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Jobs without a memory request get DefMemPerCPU, not the whole node.
DefMemPerCPU=$DEF_MEM
# Finished jobs stay visible to squeue --states=all for MinJobAge seconds (the status command of the plugin).
MinJobAge=3600
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
# The partition names of profiles/slurm/config.yaml, on the same node (the "gpu" one has no GPUs).
PartitionName=cpu Nodes=$HOST MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST MaxTime=INFINITE State=UP
EOF
CHANGED=0
if ! cmp -s "$NEW" "$CONF" 2>/dev/null; then
    install -m 644 "$NEW" "$CONF"
    CHANGED=1
fi
rm -f "$NEW"

# 3. Daemons (a running daemon is kept unless the configuration changed), tracked by their pid files.
pidfile() { case $1 in munged) echo /run/munge/munged.pid ;; *) echo "/run/slurm/$1.pid" ;; esac; }
running() {
    local pid
    pid=$(cat "$(pidfile "$1")" 2>/dev/null) && [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}
if ! running munged; then
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        /usr/sbin/mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f
    fi
    chown munge:munge /etc/munge/munge.key && chmod 600 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged || fail "munged did not start"
fi
for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.25; done
munge -n | unmunge >/dev/null 2>&1 || fail "munge does not authenticate (munge -n | unmunge fails)"

if [[ $CHANGED -eq 1 ]]; then
    for daemon in slurmd slurmctld; do
        if running "$daemon"; then kill "$(cat "$(pidfile "$daemon")")" || true; fi
    done
    for _ in $(seq 40); do running slurmctld || running slurmd || break; sleep 0.25; done
fi
if ! running slurmctld; then
    /usr/sbin/slurmctld -c || fail "slurmctld did not start"
fi
if ! running slurmd; then
    /usr/sbin/slurmd || fail "slurmd did not start"
fi

# 4. Wait for the node to be idle.
STATE=""
for _ in $(seq $((TIMEOUT * 2 + 1))); do
    STATE=$(sinfo -h -N -p debug -n "$HOST" -o %T 2>/dev/null | head -n 1 || true)
    case $STATE in
        idle | mixed | allocated) break ;;
        drain* | down*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
case $STATE in
    idle | mixed | allocated) ;;
    *)
        REASON=$(scontrol show node "$HOST" 2>&1 | grep -o 'Reason=.*' || true)
        fail "node $HOST is '${STATE:-not listed}' after ${TIMEOUT}s ($REASON)"
        ;;
esac
echo "slurm up: node $HOST ($CPUS CPUs, ${MEM_MB} MB, DefMemPerCPU=$DEF_MEM)," \
    "partitions debug (default), cpu, gpu; $(elapsed) s"
