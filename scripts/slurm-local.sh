#!/usr/bin/env bash
# A real one-host Slurm cluster (Debian's slurm-wlm + munge) on this machine, to run
# the multi-process training path through srun exactly as on a cluster:
#
#   scripts/slurm-local.sh start            # install if needed, configure, start daemons
#   srun -n 2 realsyn train --recipe R --set data.streams=2
#   scripts/slurm-local.sh stop
#
# The node declares 8 CPUs whatever the machine has (config_overrides), so a
# 2-core machine can run several ranks. Needs root (or sudo) and apt.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
host=$(hostname -s)

stop() {
    $SUDO pkill -x slurmd 2>/dev/null || true
    $SUDO pkill -x slurmctld 2>/dev/null || true
    $SUDO pkill -x munged 2>/dev/null || true
}

start() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        $SUDO apt-get install -y slurm-wlm munge >/dev/null
    fi
    stop
    $SUDO mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge /etc/slurm \
        /var/spool/slurmd /var/spool/slurmctld /var/log/slurm
    if [ ! -s /etc/munge/munge.key ]; then
        $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    $SUDO chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
    $SUDO chmod 0700 /etc/munge /var/lib/munge /var/log/munge
    $SUDO chmod 0400 /etc/munge/munge.key
    $SUDO chmod 0755 /run/munge
    $SUDO runuser -u munge -- /usr/sbin/munged
    $SUDO tee /etc/slurm/slurm.conf >/dev/null <<CONF
ClusterName=realsyn-local
SlurmctldHost=$host
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
ReturnToService=2
SlurmUser=root
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
SlurmdParameters=config_overrides
NodeName=$host CPUs=8 State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
    $SUDO slurmctld
    $SUDO slurmd
    for _ in $(seq 1 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "Slurm is up: $(sinfo -h -o '%P %D %T %c')" >&2
            return 0
        fi
        sleep 1
    done
    echo "Slurm did not come up; see /var/log/slurm/" >&2
    return 1
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
