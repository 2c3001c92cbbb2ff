#!/usr/bin/env bash
# A real one-node Slurm cluster on loopback, for the Slurm tests (tests/slurm.rs), run by .ci/run.
#
#   scripts/slurm_cluster.sh start DIR   # install slurm-wlm and munge if missing, start munged,
#                                        # slurmctld and slurmd with state, spool, pid and log
#                                        # files under DIR; waits until the node is idle
#   scripts/slurm_cluster.sh stop DIR    # stop the three daemons by their pids
#
# Clients find the cluster through SLURM_CONF=DIR/slurm.conf (the start command prints it).
# Needs root (or sudo): the daemons run as root, munged as user munge. No cgroup plugin is used
# (proctrack/linuxproc, task/none), no accounting database; finished jobs are kept in
# DIR/jobcomp.txt (jobcomp/filetxt).
set -euo pipefail

cmd=${1:?usage: slurm_cluster.sh start|stop DIR}
dir=${2:?usage: slurm_cluster.sh start|stop DIR}
sudo_cmd=""
[[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"

stop() {
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munged.pid"; do
    if [[ -f $pidfile ]]; then
      pid=$(cat "$pidfile")
      $sudo_cmd kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$pidfile"
    fi
  done
}

case $cmd in
  start)
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
      $sudo_cmd apt-get update -q
      DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends slurm-wlm munge
    fi
    mkdir -p "$dir/state" "$dir/spool"
    dir=$(cd "$dir" && pwd)
    host=$(hostname -s)
    cpus=$(nproc)
    cat > "$dir/slurm.conf" <<EOF
ClusterName=harness-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MailProg=/bin/true
DependencyParameters=kill_invalid_depend
ReturnToService=2
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    # munged: as user munge, its key made by the package's install.
    $sudo_cmd mkdir -p /run/munge
    $sudo_cmd chown munge:munge /run/munge
    $sudo_cmd runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid --force
    $sudo_cmd cp /run/munge/munged.pid "$dir/munged.pid"
    $sudo_cmd /usr/sbin/slurmctld -f "$dir/slurm.conf"
    $sudo_cmd /usr/sbin/slurmd -f "$dir/slurm.conf"
    export SLURM_CONF=$dir/slurm.conf
    for _ in $(seq 300); do
      state=$(sinfo -h -o %T 2>/dev/null || true)
      [[ $state == idle ]] && break
      sleep 0.1
    done
    if [[ $(sinfo -h -o %T 2>/dev/null || true) != idle ]]; then
      echo "slurm did not come up; logs:" >&2
      tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
      stop
      exit 1
    fi
    echo "slurm is up: one node ($host, $cpus CPUs); export SLURM_CONF=$dir/slurm.conf"
    ;;
  stop)
    stop
    ;;
  *)
    echo "usage: slurm_cluster.sh start|stop DIR" >&2
    exit 2
    ;;
esac
