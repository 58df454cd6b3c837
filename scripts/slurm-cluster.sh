#!/usr/bin/env bash
# A throw-away Slurm cluster on this one machine for the `slurm` tests: one slurmctld, a
# private munged and NODES slurmd daemons ("virtual nodes" n1..nN), all on 127.0.0.1 with a
# port each, everything (config, state, logs, per-node spool and tmp) under one directory.
#
#   scripts/slurm-cluster.sh start            # installs Slurm when missing (install-deps.sh)
#   source "$DUET_SLURM_DIR/env.sh"           # SLURM_CONF and Open MPI settings for this cluster
#   scripts/slurm-cluster.sh crash-node n2    # SIGKILL n2's slurmd, its slurmstepds and their tasks
#   scripts/slurm-cluster.sh restart-node n2  # start n2's slurmd again (it returns to idle)
#   scripts/slurm-cluster.sh stop             # by PID from pid files; removes the directory
#
# Settings (environment): DUET_SLURM_DIR (/tmp/duet-slurm), DUET_SLURM_NODES (4),
# DUET_SLURM_CPUS (8 per node: the nodes share this machine's cores), DUET_SLURM_PORT (6917:
# slurmctld; slurmd of node i listens on PORT+100+i), DUET_SLURM_SLURMD_TIMEOUT (4 s: a dead node is marked down
# within ~2x that),
# DUET_SLURM_CRED_EXPIRE (5 s: how long a requeued job waits before it may start again).
# Processes are found by PID (pid files, and open files under the cluster's directory),
# never by name: other Slurm daemons on this machine are left alone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${DUET_SLURM_DIR:-/tmp/duet-slurm}
nodes=${DUET_SLURM_NODES:-4}
cpus=${DUET_SLURM_CPUS:-8}
port=${DUET_SLURM_PORT:-6917}
slurmd_timeout=${DUET_SLURM_SLURMD_TIMEOUT:-4}
cred_expire=${DUET_SLURM_CRED_EXPIRE:-5}
export SLURM_CONF=$dir/slurm.conf

alive() { [ -e "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
descendants() { local c; for c in $(ps -o pid= --ppid "$1"); do descendants "$c"; echo "$c"; done; }
# The slurmstepds of this cluster (of one node when $1 is given): they keep its log open.
stepds() {
  local d p
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    case "$(readlink "$d/exe" 2>/dev/null)" in */slurmstepd*) ;; *) continue ;; esac
    ls -l "$d/fd" 2>/dev/null | grep -- "-> $dir/log/slurmd-${1:-}" >/dev/null && echo "$p"
  done
  return 0
}
# Waits (at most $2 s) until `sinfo` counts $1 idle nodes; the clock, not a sleep, decides.
wait_idle() {
  local want=$1 end=$((SECONDS + $2)) n=0
  while [ $SECONDS -lt $end ]; do
    n=$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l) || n=0  # a busy controller: ask again
    [ "$n" -ge "$want" ] && return 0
    sleep 0.2
  done
  echo "slurm-cluster: only $n of $want nodes idle after $2 s; logs in $dir/log" >&2
  return 1
}

start() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null ||
    "$here/install-deps.sh"
  if [ -e "$dir/run/slurmctld.pid" ] && alive "$(cat "$dir/run/slurmctld.pid")"; then
    echo "slurm-cluster: already running in $dir (scripts/slurm-cluster.sh stop)" >&2
    return 1
  fi
  rm -rf "$dir"
  mkdir -p "$dir"/{state,log,run,munge}
  chmod 755 "$dir" "$dir/munge"  # munged wants its socket directory world-searchable
  for i in $(seq 1 "$nodes"); do mkdir -p "$dir/spool/n$i" "$dir/tmp/n$i"; done
  mungekey -c -k "$dir/munge/munge.key"
  munged --key-file="$dir/munge/munge.key" -S "$dir/munge/munge.sock" --pid-file="$dir/munge/munged.pid" \
    --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
  cat >"$SLURM_CONF" <<CONF
# Written by scripts/slurm-cluster.sh: a single-machine test cluster, everything under $dir.
ClusterName=duettest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also holds a requeued job back (begin time = requeue + cred_expire, default
# 120 s): short here, so a requeued test job starts again at once.
AuthInfo=socket=$dir/munge/munge.sock,cred_expire=$cred_expire
StateSaveLocation=$dir/state
# %n: each virtual node has its own spool, log, pid file and tmp.
SlurmdSpoolDir=$dir/spool/%n
SlurmdLogFile=$dir/log/slurmd-%n.log
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmctldPidFile=$dir/run/slurmctld.pid
# srun --mpi=pmix puts its per-step directory under TmpFS: per node, or two nodes collide.
TmpFS=$dir/tmp/%n
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
MpiDefault=none
SchedulerType=sched/backfill
# Pending jobs are looked at every second (default 60 s): a requeued job starts once eligible.
SchedulerParameters=sched_interval=1,bf_interval=1
# Short: a crashed node is marked DOWN (and its jobs freed) within seconds.
SlurmdTimeout=$slurmd_timeout
MessageTimeout=2
ReturnToService=1
MinJobAge=600
KillWait=5
InactiveLimit=0
JobRequeue=1
NodeName=DEFAULT CPUs=$cpus RealMemory=4000 State=UNKNOWN
NodeName=n[1-$nodes] NodeHostname=localhost NodeAddr=127.0.0.1 Port=[$((port + 101))-$((port + 100 + nodes))]
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  cat >"$dir/env.sh" <<ENV
# source me: Slurm's commands talk to the test cluster in $dir; Open MPI as root, over TCP
# on loopback (the virtual nodes share one hostname, so shared-memory segments would collide).
export SLURM_CONF=$SLURM_CONF
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
ENV
  slurmctld -f "$SLURM_CONF"
  local end=$((SECONDS + 30))
  until scontrol ping 2>/dev/null | grep UP >/dev/null; do
    [ $SECONDS -lt $end ] || { echo "slurm-cluster: slurmctld did not answer; $dir/log/slurmctld.log" >&2; return 1; }
    sleep 0.1
  done
  for i in $(seq 1 "$nodes"); do slurmd -f "$SLURM_CONF" -N "n$i"; done
  wait_idle "$nodes" 60
  echo "slurm-cluster: $nodes nodes up in $dir; source $dir/env.sh"
}

stop() {
  [ -d "$dir" ] || return 0
  if [ -e "$dir/run/slurmctld.pid" ] && alive "$(cat "$dir/run/slurmctld.pid")"; then
    local jobs
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    [ -n "$jobs" ] && scancel $jobs 2>/dev/null || true
  fi
  local pids=() p f
  for f in "$dir"/run/slurmd-*.pid "$dir/run/slurmctld.pid" "$dir/munge/munged.pid"; do
    [ -s "$f" ] && pids+=("$(cat "$f")")
  done
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
  local end=$((SECONDS + 10)) left=1
  while [ $left = 1 ] && [ $SECONDS -lt $end ]; do
    left=0
    for p in "${pids[@]}"; do alive "$p" && left=1; done
    [ $left = 1 ] && sleep 0.1
  done
  for p in "${pids[@]}"; do alive "$p" && { kill -9 "$p" 2>/dev/null || true; }; done  # may end meanwhile
  # A slurmstepd outlives its slurmd (a crashed node): it and its tasks go too.
  for p in $(stepds); do
    for c in $(descendants "$p"); do kill -9 "$c" 2>/dev/null || true; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$dir"
  echo "slurm-cluster: stopped ($dir removed)"
}

crash_node() {
  local node=$1 killed=() p c
  p=$(cat "$dir/run/slurmd-$node.pid" 2>/dev/null) && kill -9 "$p" && killed+=("slurmd:$p")
  for p in $(stepds "$node"); do
    for c in $(descendants "$p"); do kill -9 "$c" 2>/dev/null && killed+=("task:$c"); done
    kill -9 "$p" 2>/dev/null && killed+=("slurmstepd:$p")
  done
  echo "slurm-cluster: crashed $node at $(date -u +%T.%N | cut -c1-12): ${killed[*]:-nothing}"
}

restart_node() {
  slurmd -f "$SLURM_CONF" -N "$1"
  echo "slurm-cluster: $1's slurmd started again"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  crash-node) crash_node "${2:?node name}" ;;
  restart-node) restart_node "${2:?node name}" ;;
  wait-idle) wait_idle "${2:-$nodes}" "${3:-120}" ;;
  *) echo "usage: scripts/slurm-cluster.sh start|stop|crash-node NODE|restart-node NODE|wait-idle [N [SECONDS]]" >&2; exit 2 ;;
esac
