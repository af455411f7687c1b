#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (controller and daemon on loopback), for trying
# `wattbench sweep --slurm` and for its test. Needs root and Debian's slurm-wlm and munge
# (`apt-get install slurm-wlm munge`). Usage: scripts/slurm-local.sh start|stop
set -euo pipefail
action=${1:?usage: slurm-local.sh start|stop}
conf=/etc/slurm/slurm.conf
case "$action" in
stop)
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  for _ in $(seq 1 10); do
    pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || exit 0
    sleep 0.5
  done
  pkill -KILL -x slurmd 2>/dev/null || true
  pkill -KILL -x slurmctld 2>/dev/null || true
  sleep 0.5
  exit 0
  ;;
start) ;;
*) echo "usage: slurm-local.sh start|stop" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "slurm-local.sh: run as root (it writes $conf and starts daemons)" >&2; exit 1; }
for b in munge munged slurmctld slurmd sbatch; do
  command -v "$b" >/dev/null || { echo "slurm-local.sh: $b not found; apt-get install slurm-wlm munge" >&2; exit 1; }
done
node=$(hostname -s)
mkdir -p /etc/munge /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key
fi
chown -R munge:munge /etc/munge /run/munge 2>/dev/null || true
chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
if ! munge -n >/dev/null 2>&1; then
  if id munge >/dev/null 2>&1; then runuser -u munge -- /usr/sbin/munged --force; else /usr/sbin/munged --force; fi
  for _ in $(seq 1 20); do munge -n >/dev/null 2>&1 && break; sleep 0.5; done
  munge -n >/dev/null || { echo "slurm-local.sh: munged does not answer" >&2; exit 1; }
fi
cat > "$conf" <<CONF
ClusterName=local
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 )) State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 1 30); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE 'idle|mixed|allocated'; then
    sinfo
    exit 0
  fi
  sleep 1
done
echo "slurm-local.sh: the node did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
tail -n 5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
