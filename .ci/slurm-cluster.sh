#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for tests and for trying `entrodrop-bench launch --executor slurm`:
#
#   .ci/slurm-cluster.sh up DIR     start munged, slurmctld and slurmd with every file under DIR (created);
#                                   prints `export SLURM_CONF=DIR/slurm.conf`, which every SLURM command then needs
#   .ci/slurm-cluster.sh down DIR   stop the daemons by their pid files (DIR is left as it is)
#
# Nothing outside DIR is touched: munged gets its own key and socket in DIR (a system munged, if any, is left
# alone), and the daemons listen on free ports, so several clusters (parallel test workers) can run at once.
# The node declares SLURM_TEST_CPUS CPUs (default: at least 8, more than most CI machines have): evaluation jobs
# wait for checkpoints while training jobs run, so the node must fit both; the jobs share the real cores.
# Needs slurm-wlm and munge (`.ci/system-deps.sh` installs them where it can). Exit 3: a tool is missing;
# exit 1: the cluster did not come up (the daemons' logs are printed).
set -euo pipefail
cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 up|down DIR" >&2; exit 2
fi

stop() {  # stop one daemon by its pid file, then wait for it to go (a restart on the same ports needs them free)
  local pidfile=$1
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

if [ "$cmd" = down ]; then
  stop "$dir/slurmd.pid"; stop "$dir/slurmctld.pid"; stop "$dir/munged.pid"
  exit 0
fi
[ "$cmd" = up ] || { echo "usage: $0 up|down DIR" >&2; exit 2; }

for tool in munged munge slurmctld slurmd sbatch squeue scontrol; do
  if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
    echo "slurm-cluster: $tool not found (apt-get install slurm-wlm munge)" >&2; exit 3
  fi
done
export PATH="$PATH:/usr/sbin"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
chmod 700 "$dir"
mkdir -p "$dir/state" "$dir/spool"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# munge: a fresh key, its own socket. As root, munged wants to run as the `munge` user; --force lets it run here.
head -c 1024 /dev/urandom >"$dir/munge.key"
chmod 400 "$dir/munge.key"
force=()
[ "$(id -u)" = 0 ] && force=(--force)
munged "${force[@]}" --key-file="$dir/munge.key" --socket="$dir/munge.sock" --pid-file="$dir/munged.pid" \
  --log-file="$dir/munged.log" --seed-file="$dir/munged.seed"

host=$(hostname -s)
user=$(id -un)
cpus=${SLURM_TEST_CPUS:-$(( $(nproc) > 8 ? $(nproc) : 8 ))}
cat >"$dir/slurm.conf" <<EOF
ClusterName=entrodrop
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.sock
SlurmUser=$user
SlurmdUser=$user
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=defer_batch
MinJobAge=3600
JobRequeue=1
InactiveLimit=0
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"

# Up when the node is idle (a few seconds here).
for _ in $(seq 150); do
  if [ "$(sinfo -h -n "$host" -o %t 2>/dev/null | head -1)" = idle ]; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.2
done
echo "slurm-cluster: the node did not become idle within 30 s; logs:" >&2
for log in munged slurmctld slurmd; do
  echo "--- $log.log" >&2; tail -n 15 "$dir/$log.log" >&2 2>/dev/null || true
done
"$0" down "$dir"
exit 1
