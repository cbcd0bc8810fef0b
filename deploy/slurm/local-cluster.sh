#!/usr/bin/env bash
# A single-node Slurm (slurmctld + slurmd + munge) on this machine, for the test
# suite and for trying expcluster on Slurm without a cluster.
#
#   deploy/slurm/local-cluster.sh up      install when missing, start (idempotent)
#   deploy/slurm/local-cluster.sh down    stop what `up` started
#   deploy/slurm/local-cluster.sh status  print whether it answers
#
# Needs root (it installs packages and runs the daemons as root, SlurmUser=root).
# State (spool, logs, pid files) lives in $EXPCLUSTER_SLURM_STATE (default
# /var/lib/expcluster-slurm); the config is /etc/slurm/slurm.conf, marked as ours so
# a site's own config is never overwritten.
#
# Knobs (environment):
#   EXPCLUSTER_SLURM_STATE  state directory            (/var/lib/expcluster-slurm)
#   EXPCLUSTER_SLURM_CPUS   CPUs the node advertises   (16: a test node may
#                           oversubscribe; slurmd accepts it via config_overrides)
#   EXPCLUSTER_SLURM_GPUS   GPUs as gres/gpu           (the /dev/nvidiaN files found)
set -euo pipefail

STATE="${EXPCLUSTER_SLURM_STATE:-/var/lib/expcluster-slurm}"
CONF=/etc/slurm/slurm.conf
MARKER="# managed by expcluster deploy/slurm/local-cluster.sh"
NODE="$(hostname -s)"

die() { echo "local-cluster: $*" >&2; exit 1; }
say() { echo "local-cluster: $*" >&2; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "run this as root (e.g. sudo $0 $1): it installs slurm-wlm and munge and starts their daemons"
}

# A pid file whose process is alive.
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    say "installing slurm-wlm and munge with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed: check the network or the apt sources"
    apt-get install -y -qq slurm-wlm munge >/dev/null || die "apt-get install slurm-wlm munge failed (see above)"
}

start_munge() {
    if [ ! -s /etc/munge/munge.key ]; then
        say "creating a munge key"
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key --force
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    say "starting munged"
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid || die "munged did not start: see /var/log/munge/munged.log"
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.1
    done
    die "munged started but does not answer: see /var/log/munge/munged.log"
}

gpu_count() {
    if [ -n "${EXPCLUSTER_SLURM_GPUS:-}" ]; then
        echo "$EXPCLUSTER_SLURM_GPUS"
    else
        find /dev -maxdepth 1 -name 'nvidia[0-9]*' 2>/dev/null | wc -l
    fi
}

write_config() {
    if [ -e "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; move it aside to use the local cluster"
    fi
    local cpus="${EXPCLUSTER_SLURM_CPUS:-16}"
    local mem_mb gpus gres_line="" gres_types=""
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    gpus=$(gpu_count)
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d"
    if [ "$gpus" -gt 0 ]; then
        gres_types="GresTypes=gpu"
        gres_line="Gres=gpu:$gpus"
        {
            echo "$MARKER"
            echo "NodeName=$NODE Name=gpu File=/dev/nvidia[0-$((gpus - 1))]"
        } >/etc/slurm/gres.conf
    fi
    local tmp="$CONF.tmp.$$"
    cat >"$tmp" <<CONF
$MARKER
ClusterName=expcluster-local
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
# Seconds between the SIGTERM of scancel/a time limit and the SIGKILL.
KillWait=5
MinJobAge=60
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
$gres_types
NodeName=$NODE CPUs=$cpus RealMemory=$mem_mb $gres_line State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    if ! cmp -s "$tmp" "$CONF" 2>/dev/null; then
        mv "$tmp" "$CONF"
        CONFIG_CHANGED=1
    else
        rm -f "$tmp"
    fi
}

wait_node_ready() {
    for _ in $(seq 150); do
        local state
        state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n1 || true)
        case "$state" in
            idle* | mixed* | allocated* | completing*) return 0 ;;
            down* | drain*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 0.2
    done
    die "the node $NODE did not become ready: see $STATE/slurmctld.log and $STATE/slurmd.log"
}

up() {
    require_root up
    install_packages
    start_munge
    CONFIG_CHANGED=0
    write_config
    if [ "$CONFIG_CHANGED" = 1 ] && alive "$STATE/slurmctld.pid"; then
        say "config changed: restarting the Slurm daemons"
        stop_daemons
    fi
    if ! alive "$STATE/slurmctld.pid"; then
        say "starting slurmctld"
        slurmctld || die "slurmctld did not start: see $STATE/slurmctld.log"
    fi
    if ! alive "$STATE/slurmd.pid"; then
        say "starting slurmd"
        slurmd || die "slurmd did not start: see $STATE/slurmd.log"
    fi
    wait_node_ready
    say "Slurm is up: node $NODE, partition debug, $(sinfo -h -o '%c' | head -n1) CPUs"
}

stop_pidfile() {
    local file="$1" name="$2"
    alive "$file" || return 0
    local pid
    pid=$(cat "$file")
    say "stopping $name ($pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

stop_daemons() {
    stop_pidfile "$STATE/slurmd.pid" slurmd
    stop_pidfile "$STATE/slurmctld.pid" slurmctld
}

down() {
    require_root down
    if alive "$STATE/slurmctld.pid"; then
        scancel --full --state=RUNNING,PENDING --partition debug 2>/dev/null || true
    fi
    stop_daemons
    stop_pidfile /run/munge/munged.pid munged
}

status() {
    if sinfo -h >/dev/null 2>&1; then
        sinfo
    else
        echo "local Slurm is not running (start it with $0 up)"
        return 1
    fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) die "usage: $0 up|down|status" ;;
esac
