#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for running `snakemake --profile profiles/slurm` for real
# (tests/test_slurm_cluster.py) or trying the profile before a real cluster.
#
#   scripts/slurm-cluster.sh start    start munged, MariaDB, slurmdbd, slurmctld and slurmd (installs nothing);
#                                     idempotent: what runs is left running (a changed config needs stop, start)
#   scripts/slurm-cluster.sh stop     stop what `start` started but munged (running jobs die with slurmd)
#   scripts/slurm-cluster.sh status   the daemons and `sinfo`; exit 0 only when the node takes jobs
#
# Needs root (slurmd runs jobs as their submitter; SlurmUser=root keeps one user) and Debian's packages:
#   apt-get install slurm-wlm slurmdbd munge mariadb-server        (SLURM 22.05 on Debian 12)
# It writes $SLURM_CONF (default /etc/slurm/slurm.conf, where every SLURM command looks), and gres.conf
# and slurmdbd.conf beside it, and refuses to overwrite a slurm.conf it did not write. State, logs and
# the database live under $CNNREPRO_SLURM_STATE (default /var/lib/cnnrepro-slurm).
#
# The node: this machine's CPUs and memory (`slurmd -C`), one default partition `main`, and
# $CNNREPRO_SLURM_GPUS fake `gpu` GRES (default 2; /dev/null-like device files) so that the profile's
# `--gpus=1` requests are accepted on a machine with none; the jobs then train on the CPU.
# Accounting: `sacct` (the SLURM executor's default source of job states, and the listing of a run's
# jobs; profiles/slurm polls squeue instead, see there) answers only through
# slurmdbd ("Slurm accounting storage is disabled" otherwise; 22.05 has no file backend), and slurmdbd
# stores only in MySQL/MariaDB: a private MariaDB (apt-get install slurmdbd mariadb-server) runs on
# 127.0.0.1:$CNNREPRO_SLURM_DB_PORT (default 13306) with its data under the state directory.
set -euo pipefail

CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
CONF_DIR=$(dirname "$CONF")
STATE=${CNNREPRO_SLURM_STATE:-/var/lib/cnnrepro-slurm}
FAKE_GPUS=${CNNREPRO_SLURM_GPUS:-2}
DB_PORT=${CNNREPRO_SLURM_DB_PORT:-13306}
MARK="# written by cnnrepro scripts/slurm-cluster.sh"
NODE=$(hostname -s)

die() { echo "slurm-cluster: $*" >&2; exit 1; }

pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_conf() {
    if [[ -e $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script; move it away or set SLURM_CONF"
    fi
    local hw cpus mem
    hw=$(slurmd -C | head -1)
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
    mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
    [[ -n $cpus && -n $mem ]] || die "cannot read CPUs and RealMemory from 'slurmd -C': $hw"
    mkdir -p "$CONF_DIR" "$STATE"/{ctld,spool,log}
    local gres_node=""
    if ((FAKE_GPUS > 0)); then gres_node="Gres=gpu:$FAKE_GPUS"; fi
    # Written under a temporary name and renamed: a daemon never reads half a file.
    cat >"$CONF.tmp" <<EOF
$MARK; edits are overwritten by its next start
ClusterName=cnnrepro
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$NODE
# Keep sbatch --comment (the plugin writes rule and wildcards there) for sacct -o Comment.
AccountingStoreFlags=job_comment
# Count the GPUs in AllocTRES (sacct), as a GPU cluster would.
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
GresTypes=gpu
NodeName=$NODE CPUs=$cpus RealMemory=$mem $gres_node State=UNKNOWN
PartitionName=main Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
    # slurmdbd refuses a config readable by others (it holds the database password).
    (umask 077 && cat >"$CONF_DIR/slurmdbd.conf.tmp" <<EOF
$MARK
AuthType=auth/munge
DbdHost=$NODE
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    )
    mv "$CONF_DIR/slurmdbd.conf.tmp" "$CONF_DIR/slurmdbd.conf"
    if ((FAKE_GPUS > 0)); then
        # slurmd drops a GPU without a device file and rejects a plain file: character devices
        # equal to /dev/null (1,3) stand in (TaskPlugin=task/none binds no devices to jobs).
        mkdir -p "$STATE/fake-gpus"
        for ((i = 0; i < FAKE_GPUS; i++)); do
            [[ -c $STATE/fake-gpus/gpu$i ]] || { rm -f "$STATE/fake-gpus/gpu$i"; mknod "$STATE/fake-gpus/gpu$i" c 1 3; }
        done
        printf '%s\nNodeName=%s Name=gpu File=%s/fake-gpus/gpu[0-%s]\n' \
            "$MARK" "$NODE" "$STATE" $((FAKE_GPUS - 1)) >"$CONF_DIR/gres.conf.tmp"
        mv "$CONF_DIR/gres.conf.tmp" "$CONF_DIR/gres.conf"
    fi
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    su -s /bin/sh munge -c munged
    for _ in $(seq 20); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.5
    done
    die "munged did not start (see /var/log/munge/munged.log)"
}

db() { mariadb --protocol=socket -S "$STATE/db/mysqld.sock" -uroot "$@"; }

start_db() {
    if [[ ! -d $STATE/db/mysql ]]; then
        rm -rf "$STATE/db"
        mariadb-install-db --user=root --datadir="$STATE/db" --auth-root-authentication-method=socket \
            >"$STATE/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed: $STATE/log/mariadb-install.log"
    fi
    if ! pid_alive "$STATE/db/mysqld.pid"; then
        mariadbd --no-defaults --user=root --datadir="$STATE/db" --socket="$STATE/db/mysqld.sock" \
            --pid-file="$STATE/db/mysqld.pid" --bind-address=127.0.0.1 --port="$DB_PORT" \
            --log-error="$STATE/log/mariadb.log" --innodb-buffer-pool-size=128M \
            --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 &
        disown
    fi
    for _ in $(seq 60); do
        db -e 'SELECT 1' >/dev/null 2>&1 && break
        sleep 0.5
    done
    db -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" ||
        die "MariaDB on 127.0.0.1:$DB_PORT did not start; see $STATE/log/mariadb.log"
}

start_dbd() {
    pid_alive "$STATE/slurmdbd.pid" || slurmdbd
    for _ in $(seq 60); do
        sacctmgr -n list cluster format=cluster 2>/dev/null | grep -qw cnnrepro && return
        sacctmgr -i add cluster cnnrepro >/dev/null 2>&1 || true
        sleep 1
    done
    die "slurmdbd does not answer; see $STATE/log/slurmdbd.log"
}

node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -1; }

start() {
    [[ $(id -u) == 0 ]] || die "must run as root (slurmd runs jobs as their user; SlurmUser=root)"
    for tool in slurmctld slurmd munged sinfo slurmdbd mariadbd; do
        command -v "$tool" >/dev/null || die "$tool not found: apt-get install slurm-wlm slurmdbd munge mariadb-server"
    done
    write_conf
    start_munge
    start_db
    start_dbd
    pid_alive "$STATE/slurmctld.pid" || slurmctld -f "$CONF"
    pid_alive "$STATE/slurmd.pid" || slurmd -f "$CONF"
    local state=""
    for _ in $(seq 60); do
        state=$(node_state)
        case $state in
            idle* | mixed* | allocated*)
                # Ready means sacct answers too (slurmdbd up and the cluster registered).
                if sacct -n -X -S now >/dev/null 2>&1; then echo "slurm-cluster: node $NODE $state"; return; fi ;;
            down* | drain*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
        esac
        sleep 1
    done
    die "node $NODE not ready (state '${state:-none}'); see $STATE/log/"
}

stop_daemon() {
    local pidfile=$1 name=$2
    pid_alive "$pidfile" || return 0
    local pid
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    die "$name (pid $pid) did not stop"
}

stop() {
    stop_daemon "$STATE/slurmd.pid" slurmd
    stop_daemon "$STATE/slurmctld.pid" slurmctld
    stop_daemon "$STATE/slurmdbd.pid" slurmdbd
    stop_daemon "$STATE/db/mysqld.pid" mariadbd
    echo "slurm-cluster: stopped (munged left running)"
}

status() {
    pid_alive "$STATE/slurmctld.pid" || { echo "slurmctld: not running"; return 1; }
    pid_alive "$STATE/slurmd.pid" || { echo "slurmd: not running"; return 1; }
    pid_alive "$STATE/slurmdbd.pid" || { echo "slurmdbd: not running"; return 1; }
    sinfo -N -o "%N %T %c %m %G"
    case $(node_state) in idle* | mixed* | allocated*) return 0 ;; *) return 1 ;; esac
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 {start|stop|status}" >&2; exit 2 ;;
esac
