#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the `slurm` tests (make test-slurm).
#
#   scripts/slurm_cluster.sh start   # install slurm-wlm + munge if missing, write slurm.conf, start the daemons
#   scripts/slurm_cluster.sh stop    # stop munged, slurmctld and slurmd by the PIDs recorded at start
#   scripts/slurm_cluster.sh status  # exit 0 when the cluster answers
#   scripts/slurm_cluster.sh env     # the variables a client needs: eval "$(scripts/slurm_cluster.sh env)"
#
# Needs root on a Debian-like machine (no systemd is used). Everything lives in $SLURM_STATE
# (default /tmp/maxpoolbert-slurm): slurm.conf, munge key/socket, spool, logs and PID files.
# The node has the machine's own CPUs and memory; one partition `debug` (default) and one
# partition `tiny` with a 1-minute time limit (for the "can never start" tests).
set -euo pipefail

STATE="${SLURM_STATE:-/tmp/maxpoolbert-slurm}"
CONF="$STATE/slurm.conf"
HOST="$(hostname -s)"

say() { printf 'slurm_cluster: %s\n' "$*" >&2; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
      && command -v sbatch >/dev/null; then
    return
  fi
  [ "$(id -u)" = 0 ] || { say "slurm-wlm/munge are missing and installing them needs root"; exit 3; }
  command -v apt-get >/dev/null || { say "slurm-wlm/munge are missing and there is no apt-get"; exit 3; }
  say "installing slurm-wlm and munge"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_conf() {
  local cpus mem_mb
  cpus="$(nproc --all)"
  mem_mb="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"  # leave the OS a tenth
  mkdir -p "$STATE"/{ctld,spool,munge}
  chmod 700 "$STATE/munge"
  if [ ! -s "$STATE/munge/munge.key" ]; then
    dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$STATE/munge/munge.key"
  fi
  cat >"$CONF" <<EOF
ClusterName=maxpoolbert
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
JobRequeue=1
EnforcePartLimits=NO
SlurmctldPort=${SLURM_CTLD_PORT:-16817}
SlurmdPort=${SLURMD_PORT:-16818}
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=600
KillWait=5
NodeName=$HOST CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=tiny Nodes=$HOST Default=NO MaxTime=1 State=UP
EOF
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  install_packages
  if status >/dev/null 2>&1; then say "already running ($CONF)"; return; fi
  write_conf
  alive "$STATE/munged.pid" || munged --force --socket="$STATE/munge/munge.socket" \
    --key-file="$STATE/munge/munge.key" --pid-file="$STATE/munged.pid" --log-file="$STATE/munged.log" \
    --seed-file="$STATE/munge/munge.seed"
  alive "$STATE/slurmctld.pid" || slurmctld -f "$CONF" -i
  alive "$STATE/slurmd.pid" || slurmd -f "$CONF" -N "$HOST"
  for _ in $(seq 60); do
    if SLURM_CONF="$CONF" sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      say "up: $HOST, $(nproc --all) CPUs, partitions debug (default) and tiny; SLURM_CONF=$CONF"
      return
    fi
    sleep 1
  done
  say "the node did not come up; logs in $STATE"
  stop
  exit 1
}

stop() {
  local name pid
  for name in slurmd slurmctld munged; do
    if [ -s "$STATE/$name.pid" ]; then
      pid="$(cat "$STATE/$name.pid")"
      if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      fi
      rm -f "$STATE/$name.pid"
    fi
  done
  say "stopped"
}

status() {
  [ -f "$CONF" ] && alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid" \
    && SLURM_CONF="$CONF" sinfo -h >/dev/null 2>&1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status && echo "running ($CONF)" ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
