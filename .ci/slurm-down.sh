#!/usr/bin/env bash
# Stop the daemons that .ci/slurm-up.sh started (by their pid files / exact names, owned by root or munge).
set -uo pipefail

stop() {  # stop <name> <pidfile>
    local name=$1 pidfile=$2 pid=""
    [ -s "$pidfile" ] && pid=$(cat "$pidfile")
    [ -n "$pid" ] || pid=$(pgrep -x "$name" | head -1)
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
}

command -v scancel >/dev/null && scancel --full --quiet --state=PENDING,RUNNING 2>/dev/null || true
stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
stop munged /run/munge/munged.pid
echo "slurm-down: stopped"
