#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on this machine, for the test suite and for
# trying the SLURM launcher without a cluster. Needs root (Debian packages, daemons).
#
#   eval "$(bash scripts/slurm-local.sh up)"   # prints: export SLURM_CONF=...
#   bash scripts/slurm-local.sh down
#
# munge + slurmctld + slurmd, with MariaDB + slurmdbd for accounting: without
# accounting submitit cannot see that a job died without a result and waits forever.
# Everything lives under $SLURM_LOCAL_DIR: by default a fresh private directory that
# `up` makes with mktemp -d and prints (export SLURM_LOCAL_DIR=...); `down` finds it
# from $SLURM_LOCAL_DIR or $SLURM_CONF. A given directory must be yours alone (it is
# wiped by up), and a PID file counts only when it holds a positive PID of a daemon
# started under that directory: this runs as root, next to other users' files in /tmp.
# Things that matter on small containers:
#  - munged wants o+x on every directory of its socket path;
#  - slurmdbd finds the munge socket through AccountingStoragePass, not AuthInfo;
#  - a requeued job waits cred_expire + 1 s before it may start again: 10 s here;
#  - no cgroups or systemd: proctrack/linuxproc and task/none.
set -euo pipefail
say() { echo "[slurm-local] $*" >&2; }
die() { say "$*"; [ -n "${D:-}" ] && { tail -n 20 "$D"/log/*.log >&2 2>/dev/null || true; }; exit 1; }
retry() { # retry SECONDS command...: until it succeeds or time runs out
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do ((SECONDS < end)) || return 1; sleep 0.2; done
}
private() { # private DIR: a real directory of this user that nobody else may write to
  [ -d "$1" ] && [ ! -L "$1" ] && [ -O "$1" ] && [ -z "$(find "$1" -maxdepth 0 -perm /022)" ]
}
# the local directory: given, or found from the SLURM_CONF that up printed, or (up) a fresh one
if [ -n "${SLURM_LOCAL_DIR:-}" ]; then
  D=$SLURM_LOCAL_DIR
elif [ -n "${SLURM_CONF:-}" ] && [ "${1:-}" != up ]; then
  D=$(dirname "$(dirname "$SLURM_CONF")")
elif [ "${1:-}" = up ]; then
  D=$(mktemp -d /tmp/benchmark-slurm.XXXXXXXX)
else
  D=""
fi
export SLURM_CONF=$D/etc/slurm.conf
# daemon -> the process name its PID file must belong to
declare -A COMM=([munged]=munged [mysqld]=mariadbd [slurmdbd]=slurmdbd [slurmctld]=slurmctld [slurmd]=slurmd)
pid_of() { # pid_of NAME: the PID in its PID file, only if it is a positive PID of that daemon started under $D
  local file="$D/run/$1.pid" pid
  [ -f "$file" ] && [ ! -L "$file" ] && [ -O "$file" ] || return 1
  pid=$(head -c 32 "$file" | tr -d '[:space:]')
  [[ $pid =~ ^[1-9][0-9]{0,9}$ ]] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "${COMM[$1]}" ] || return 1
  # ours: the daemon's command line or environment names this directory
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$D" \
    || tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$SLURM_CONF" || return 1
  echo "$pid"
}
running() { local pid; pid=$(pid_of "$1") && kill -0 "$pid" 2>/dev/null; }

install() {
  local want="munge slurmctld slurmd slurm-client slurmdbd mariadb-server" missing=""
  for p in $want; do dpkg -s "$p" >/dev/null 2>&1 || missing+=" $p"; done
  [ -z "$missing" ] && return 0
  say "installing$missing"
  # keep the packages' init scripts from starting system daemons
  local policy=/usr/sbin/policy-rc.d created=0
  [ -e $policy ] || { printf '#!/bin/sh\nexit 101\n' >$policy; chmod +x $policy; created=1; }
  local log
  log=$(mktemp /tmp/slurm-local-install.XXXXXXXX.log)
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; } \
    >$log 2>&1 || { [ $created = 1 ] && rm -f $policy; tail -n 20 $log >&2; die "apt-get install failed (log: $log)"; }
  [ $created = 1 ] && rm -f $policy
  return 0
}

configure() {
  local host node mem
  host=$(hostname -s)
  node=$(slurmd -C 2>/dev/null | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ *RealMemory=[0-9]*//') || true
  [ -n "$node" ] || node="CPUs=$(nproc)"
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  cat >"$SLURM_CONF" <<CONF
ClusterName=benchmark
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/run/munge.sock,cred_expire=10
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
ReturnToService=2
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStoragePass=$D/run/munge.sock
NodeName=$host NodeAddr=127.0.0.1 $node RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  # slurmdbd reads slurmdbd.conf next to slurm.conf, and only when it is mode 600
  cat >"$D/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$D/run/munge.sock
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$D/log/slurmdbd.log
PidFile=$D/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3307
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
  chmod 600 "$D/etc/slurmdbd.conf"
}

up() {
  for d in munged mysqld slurmdbd slurmctld slurmd; do
    running $d && die "$d is already running: run '$0 down' first"
  done
  [ -e "$D" ] || [ -L "$D" ] || mkdir -m 700 "$D"
  private "$D" || die "$D is not a private directory of yours (a link, someone else's, or writable by others)"
  install
  find "$D" -mindepth 1 -delete
  mkdir -p "$D"/{etc,munge,run,log,state,spool,mysql}
  chmod 755 "$D" "$D/run"
  chmod 700 "$D/munge"
  configure

  dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$D/munge/munge.key"
  munged --socket="$D/run/munge.sock" --key-file="$D/munge/munge.key" --pid-file="$D/run/munged.pid" \
    --log-file="$D/log/munged.log" --seed-file="$D/munge/seed"
  retry 10 munge -n -S "$D/run/munge.sock" || die "munged did not start"

  mariadb-install-db --no-defaults --datadir="$D/mysql" --user=root --auth-root-authentication-method=socket \
    --skip-test-db >"$D/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed"
  setsid mariadbd --no-defaults --datadir="$D/mysql" --socket="$D/run/mysqld.sock" --port=3307 \
    --bind-address=127.0.0.1 --skip-name-resolve --user=root --pid-file="$D/run/mysqld.pid" \
    --log-error="$D/log/mysqld.log" --innodb-buffer-pool-size=32M </dev/null >/dev/null 2>&1 &
  retry 30 mariadb-admin --no-defaults -S "$D/run/mysqld.sock" -u root ping || die "mariadbd did not start"
  retry 10 test -s "$D/run/mysqld.pid" || die "mariadbd wrote no pid file"
  mariadb --no-defaults -S "$D/run/mysqld.sock" -u root -e \
    "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
  slurmdbd
  retry 30 sacctmgr -n show cluster || die "slurmdbd did not answer"
  sacctmgr -i add cluster benchmark >/dev/null

  slurmctld -c
  slurmd
  retry 30 bash -c '[ "$(sinfo -h -o %t)" = idle ]' || die "the node did not become idle"
  say "up: $(sinfo -h -o '%P %N %c CPUs %m MB') under $D"
  echo "export SLURM_LOCAL_DIR=$D"
  echo "export SLURM_CONF=$SLURM_CONF"
}

stop() { # stop NAME...: SIGTERM, up to 20 s, then SIGKILL
  local d pid
  for d in "$@"; do
    pid=$(pid_of "$d") || continue
    kill -TERM "$pid" 2>/dev/null || true
    retry 20 bash -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
  done
}

down() {
  if running slurmctld; then # cancel jobs first, so that no job step outlives slurmd
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
      scancel $jobs || true
      retry 30 bash -c '[ -z "$(squeue -h -o %A)" ]' || say "jobs still listed: $(squeue -h -o %A | tr '\n' ' ')"
    fi
  fi
  stop slurmd slurmctld
  stop slurmdbd mysqld
  stop munged
  rm -f "$D"/run/*.pid
}

[ -n "$D" ] || { say "no cluster named: set SLURM_LOCAL_DIR or SLURM_CONF as 'up' printed them"; exit 2; }
case "${1:-}" in
  up) up ;;
  down) down ;;
  status) sinfo && squeue ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
