#!/usr/bin/env bash
# Start a real one-node SLURM on this machine for the @pytest.mark.slurm tests.
#
# Installs Debian's slurm-wlm and munge, writes a munge key and a slurm.conf for a
# single node named after `hostname -s` (all of its CPUs, SLURM_MEM_MB of memory,
# no accounting database, no cgroups), starts munged, slurmctld and slurmd as root,
# and waits until `sinfo` reports the node idle. Partitions: `cpu` (default) and
# `gpu` (the same node; it has no GPUs, so only CPU rules can run here), matching
# the partition names in profiles/slurm/config.v8+.yaml.
# Stop everything with .ci/slurm-down.sh. Needs root (CI runs as root).
set -euo pipefail

SLURM_MEM_MB=${SLURM_MEM_MB:-20000}
STATE=${SLURM_STATE_DIR:-/var/lib/im2flow-slurm}
HOST=$(hostname -s)
CPUS=$(nproc)

if [ "$(id -u)" -ne 0 ]; then
    echo "slurm-up: must run as root" >&2
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# munge: a key readable only by its owner, and its run/log directories
install -d -m 0700 -o munge -g munge /etc/munge /var/lib/munge /var/log/munge
install -d -m 0755 -o munge -g munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! pgrep -u munge -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 20); do munge -n | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
munge -n | unmunge >/dev/null

# slurm: one node, everything as root, no accounting, no cgroups
install -d "$STATE" "$STATE/ctld" "$STATE/d" /var/log/slurm /etc/slurm
cat > /etc/slurm/slurm.conf <<CONF
# written by .ci/slurm-up.sh: a one-node SLURM for CI
ClusterName=im2flow-ci
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# finished jobs stay visible to squeue for 10 minutes: the executor polls squeue
# (no accounting database, so no sacct)
MinJobAge=600
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$HOST CPUs=$CPUS RealMemory=$SLURM_MEM_MB State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST Default=NO MaxTime=INFINITE State=UP
CONF
# Debian's slurm-client reads /etc/slurm/slurm.conf; cgroup.conf is not used (no cgroup plugins)

if ! pgrep -x slurmctld >/dev/null; then
    slurmctld -i   # -i: ignore state left by an earlier run
fi
for _ in $(seq 30); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 1; done
if ! pgrep -x slurmd >/dev/null; then
    slurmd
fi

for _ in $(seq 60); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1 || true)
    case "$state" in
        idle|mixed|allocated) break ;;
        down*|drain*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
done
state=$(sinfo -h -n "$HOST" -o %T | head -1)
if [ "$state" != idle ]; then
    echo "slurm-up: node $HOST is '$state', not idle" >&2
    tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
    exit 1
fi
echo "slurm-up: node $HOST idle ($CPUS CPUs, $SLURM_MEM_MB MB); partitions: $(sinfo -h -o %P | tr '\n' ' ')"
