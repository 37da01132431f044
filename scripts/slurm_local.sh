#!/usr/bin/env bash
# A one-node Slurm cluster on localhost from Debian packages, for CI and for trying the slurm backend.
#
#   scripts/slurm_local.sh start        install slurm-wlm + munge if missing (needs root and apt-get), start
#                                       munged, slurmctld, slurmd -N localhost, wait for an idle node; prints
#                                       the names of the daemons it started (none if all were running)
#   scripts/slurm_local.sh stop [NAME]  stop those daemons (default: every one this script has started)
#   scripts/slurm_local.sh status       sinfo
#
# In a script:  started=$(scripts/slurm_local.sh start); trap "scripts/slurm_local.sh stop $started" EXIT
#
# State, logs and pid files live in $SLURM_LOCAL_DIR (default /tmp/testbed-slurm). The config goes to
# /etc/slurm/slurm.conf so that sbatch, squeue and submitit find it without SLURM_CONF; an existing
# config that this script did not write is never touched. No accounting: `sacct` fails and submitit
# reads job states as UNKNOWN, so the testbed relies on run files and `squeue` instead.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/testbed-slurm}
CPUS=${SLURM_LOCAL_CPUS:-2}
CONF=/etc/slurm/slurm.conf
MARK="# written by testbed scripts/slurm_local.sh"

log() { echo "slurm_local: $*" >&2; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
      && command -v sbatch >/dev/null; then
    return
  fi
  [ "$(id -u)" = 0 ] || { log "slurm-wlm/munge missing and not root: install them first"; exit 1; }
  log "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

write_conf() {
  if [ -f "$CONF" ] && ! head -1 "$CONF" | grep -qF "$MARK"; then
    log "$CONF exists and was not written by this script: using it as is"
    return
  fi
  # The node's memory as slurmd measures it (MB), a little under, so the node never drains as 'Low RealMemory'.
  local mem_mb
  mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.97}' /proc/meminfo)
  mkdir -p "$(dirname "$CONF")"
  cat >"$CONF" <<EOF
$MARK
ClusterName=testbed
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=10
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  if munge_ok; then
    return
  fi
  [ -s /etc/munge/munge.key ] || { mungekey --create >/dev/null 2>&1 || create-munge-key -f >/dev/null; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged
  STARTED+=(munged)
  for _ in $(seq 50); do munge_ok && return; sleep 0.2; done
  log "munged did not come up"; exit 1
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  # A start that fails half-way stops what it had started.
  trap 'rc=$?; if [ $rc -ne 0 ] && [ ${#STARTED[@]} -gt 0 ]; then stop "${STARTED[@]}"; fi' EXIT
  install_packages
  mkdir -p "$DIR/state" "$DIR/spool"
  write_conf
  start_munge
  if ! pid_alive "$DIR/slurmctld.pid"; then
    slurmctld -c -i   # cold start: forget jobs of an earlier session
    STARTED+=(slurmctld)
  fi
  if ! pid_alive "$DIR/slurmd.pid"; then
    slurmd -N localhost
    STARTED+=(slurmd)
  fi
  if [ ${#STARTED[@]} -gt 0 ]; then printf '%s\n' "${STARTED[@]}" >>"$DIR/started"; fi
  local state=""
  for _ in $(seq 120); do
    state=$(sinfo -h -N -n localhost -o %T 2>/dev/null || true)
    case "$state" in
      idle|mixed|allocated) log "node localhost is $state"; echo "${STARTED[*]}"; return ;;
      drain*|down*) scontrol update nodename=localhost state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
  done
  log "the node did not become idle (state: '${state:-none}'); see $DIR/slurmctld.log and $DIR/slurmd.log"
  exit 1
}

stop_pidfile() {  # name, pid file
  [ -f "$2" ] || return 0
  local pid; pid=$(cat "$2")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  log "$1 (pid $pid) did not stop; killing it"; kill -9 "$pid" 2>/dev/null || true
}

stop() {  # names of daemons to stop; none: all that this script has started
  local names=("$@")
  if [ ${#names[@]} -eq 0 ] && [ -f "$DIR/started" ]; then mapfile -t names <"$DIR/started"; fi
  [ ${#names[@]} -gt 0 ] || { log "nothing to stop"; return; }
  has() { printf '%s\n' "${names[@]}" | grep -qx "$1"; }
  # Jobs first, so that none outlives the cluster; then the daemons, in reverse order of start.
  if has slurmctld; then scancel --user "$(id -un)" 2>/dev/null || true; fi
  if has slurmd; then stop_pidfile slurmd "$DIR/slurmd.pid"; fi
  if has slurmctld; then stop_pidfile slurmctld "$DIR/slurmctld.pid"; fi
  if has munged; then stop_pidfile munged /run/munge/munged.pid; fi
  if [ -f "$DIR/started" ]; then
    grep -vxF -f <(printf '%s\n' "${names[@]}") "$DIR/started" >"$DIR/started.tmp" || true
    mv "$DIR/started.tmp" "$DIR/started"
    [ -s "$DIR/started" ] || rm -f "$DIR/started"
  fi
  log "stopped: ${names[*]}"
}

STARTED=()
case "${1:-}" in
  start) start ;;
  stop) shift; stop "$@" ;;
  status) sinfo ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
