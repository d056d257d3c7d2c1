#!/usr/bin/env bash
# Bring up a single-node SLURM "cluster" on 127.0.0.1 for tests/test_slurm.py (Debian 12, root, no systemd).
# SLURM_ACCOUNTING=1 also starts MariaDB + slurmdbd so that sacct works; without it, Snakemake must be run with
# --slurm-status-command squeue (the plugin would otherwise wait forever on a failing sacct). PIDs go to
# $SLURM_BASE/pids for slurm-down.sh. Adapted from a tested recipe; apt needs the Debian package mirror.
set -euo pipefail
ACCOUNTING=${SLURM_ACCOUNTING:-0}
BASE=${SLURM_BASE:-/tmp/slurm-ci}
H=$(hostname -s)
export DEBIAN_FRONTEND=noninteractive
t0=$(date +%s)
ts() { echo "[slurm-up +$(( $(date +%s) - t0 ))s] $*"; }

# wait_for DESCRIPTION TRIES(0.5s each) CMD...
wait_for() { local what=$1 n=$2; shift 2
  for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && { ts "$what ready"; return 0; }; sleep 0.5; done
  echo "timeout waiting for $what" >&2; return 1; }

# --- packages ---------------------------------------------------------------
pkgs="munge slurmctld slurmd slurm-client"
[ "$ACCOUNTING" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
if ! dpkg -s $pkgs >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi
ts "packages installed: $pkgs"

mkdir -p "$BASE"/{state,spool,log}
: > "$BASE/pids"

# --- munge ------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
  mungekey -c -k /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
runuser -u munge -- /usr/sbin/munged          # forks; pid in /run/munge/munged.pid
wait_for munged 20 sh -c 'munge -n | unmunge'
echo "munged $(cat /run/munge/munged.pid)" >> "$BASE/pids"

# --- slurm.conf ---------------------------------------------------------------
if [ "$ACCOUNTING" = 1 ]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
else
  ACCT="AccountingStorageType=accounting_storage/none"
fi
mkdir -p /etc/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=${H}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/slurmctld.pid
SlurmdPidFile=$BASE/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
$ACCT
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# keep finished jobs visible to squeue for 10 min (needed by snakemake's squeue status mode)
MinJobAge=600
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
# Four CPUs at least, even on two cores (config_overrides): the tests run three one-CPU training jobs at once.
SlurmdParameters=config_overrides
NodeName=${H} NodeAddr=127.0.0.1 CPUs=$(( $(nproc) > 4 ? $(nproc) : 4 )) RealMemory=$(( $(free -m | awk '/^Mem:/{print $2}') * 85 / 100 )) State=UNKNOWN
# Preemption as shared GPU partitions have it: a job in 'urgent' (higher PriorityTier) pushes out jobs of the two
# preemptible partitions, which SLURM then requeues (PreemptMode=REQUEUE) or cancels (PreemptMode=CANCEL); jobs in
# 'debug' are never preempted. Requeueable by default (JobRequeue=1), as on most clusters.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
JobRequeue=1
PartitionName=debug Nodes=${H} Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=OFF
PartitionName=preempt_requeue Nodes=${H} MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE
PartitionName=preempt_cancel Nodes=${H} MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=CANCEL
PartitionName=urgent Nodes=${H} MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
CONF

# --- optional accounting: MariaDB + slurmdbd ----------------------------------------
if [ "$ACCOUNTING" = 1 ]; then
  install -d -o mysql -g mysql /run/mysqld "$BASE/mariadb"
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --port=3306 \
      --socket=/run/mysqld/mysqld.sock --pid-file="$BASE/mariadb/mariadb.pid" \
      --log-error="$BASE/mariadb/mariadb.err" >/dev/null 2>&1 &
  echo "mariadbd $!" >> "$BASE/pids"
  wait_for mariadb 120 mariadb-admin ping
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmci';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
PidFile=$BASE/slurmdbd.pid
LogFile=$BASE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=slurmci
StorageLoc=slurm_acct_db
CONF
  chmod 600 /etc/slurm/slurmdbd.conf
  slurmdbd                                            # forks
  wait_for slurmdbd 120 sacctmgr -n show cluster
  echo "slurmdbd $(cat $BASE/slurmdbd.pid)" >> "$BASE/pids"
fi

# --- slurmctld + slurmd (daemon mode, pid files) ----------------------------------------
slurmctld
wait_for slurmctld 60 sh -c 'scontrol ping | grep -q UP'
echo "slurmctld $(cat $BASE/slurmctld.pid)" >> "$BASE/pids"
slurmd
wait_for "node ${H} idle" 60 sh -c "sinfo -h -n ${H} -o %T | grep -qx idle"
echo "slurmd $(cat $BASE/slurmd.pid)" >> "$BASE/pids"
ts "single-node SLURM up (accounting=$ACCOUNTING); pids in $BASE/pids"
