#!/usr/bin/env bash
# A local Slurm of two nodes on this machine (slurmctld + munge, and one slurmd per
# node), for the test suite and for trying expcluster on Slurm without a cluster.
#
#   deploy/slurm/local-cluster.sh up       install when missing, start (idempotent; it
#                                          also repairs what a killed run left behind)
#   deploy/slurm/local-cluster.sh down     stop what `up` started, remove its network
#   deploy/slurm/local-cluster.sh status   print whether it answers, and its nodes
#   deploy/slurm/local-cluster.sh address  print the controller's address on the node
#                                          network (where a coordinator for the nodes listens)
#
# The nodes are hosts, not threads. Each slurmd runs in its own Linux network namespace
# (ecslurm1, ecslurm2, ...) with its own address (10.78.0.11, .12, ...) on a veth pair
# plugged into the bridge ecslurm0 (10.78.0.1) in the root namespace, and its own host
# name (a UTS namespace): a job's `hostname` names its node, and processes on two nodes
# talk over a network. slurmctld and munged stay in the root namespace; munge's socket
# is a file, and the filesystem is shared by all nodes (as a cluster's shared
# filesystem is). A node resolves the node names and the controller's name through
# /etc/netns/<node>/hosts, which its slurmd's private mount namespace has over
# /etc/hosts (and so has every job Slurm starts there; `ip netns exec <node>` mounts
# the same file for a shell on the node).
#
# Why not Slurm's multiple-slurmd mode (Debian's build has it): its nodes share one
# host name and one network stack, so a gang "across nodes" would talk over loopback,
# and a worker's host name would not say where it ran.
#
# A process in the root namespace reaches a node at its address, and a node reaches the
# root namespace at the bridge address: a coordinator that workers on the nodes must
# reach listens there (`$0 address`), not on 127.0.0.1, which is each node's own.
#
# Needs root (it installs packages, makes namespaces and runs the daemons as root,
# SlurmUser=root). State (spool, logs, pid files) lives in $EXPCLUSTER_SLURM_STATE
# (default /var/lib/expcluster-slurm); the config is /etc/slurm/slurm.conf, marked as
# ours so a site's own config is never overwritten.
#
# Knobs (environment):
#   EXPCLUSTER_SLURM_STATE  state directory                 (/var/lib/expcluster-slurm)
#   EXPCLUSTER_SLURM_NODES  nodes, 1 to 9                   (2)
#   EXPCLUSTER_SLURM_CPUS   CPUs each node advertises       (16: a test node may
#                           oversubscribe; slurmd accepts it via config_overrides)
#   EXPCLUSTER_SLURM_GPUS   GPUs of each node as gres/gpu   (the /dev/nvidiaN files
#                           found; the nodes share them, there is one machine)
set -euo pipefail

STATE="${EXPCLUSTER_SLURM_STATE:-/var/lib/expcluster-slurm}"
CONF=/etc/slurm/slurm.conf
MARKER="# managed by expcluster deploy/slurm/local-cluster.sh"
CONTROLLER="$(hostname -s)"
NODE_COUNT="${EXPCLUSTER_SLURM_NODES:-2}"
# The names and the subnet are this script's alone: other test harnesses on this
# machine make their own namespaces, under other names.
PREFIX=ecslurm
BRIDGE="${PREFIX}0"
SUBNET=10.78.0
BRIDGE_ADDR="$SUBNET.1"

die() { echo "local-cluster: $*" >&2; exit 1; }
say() { echo "local-cluster: $*" >&2; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "run this as root (e.g. sudo $0 $1): it installs slurm-wlm and munge, makes network namespaces and starts the daemons"
}

case "$NODE_COUNT" in
    [1-9]) ;;
    *) die "EXPCLUSTER_SLURM_NODES must be 1 to 9, not '$NODE_COUNT'" ;;
esac

nodes() { seq 1 "$NODE_COUNT"; }
node_name() { echo "$PREFIX$1"; }
node_addr() { echo "$SUBNET.$((10 + $1))"; }
# The root namespace's end of the node's veth pair (the node's end is its eth0).
host_veth() { echo "$PREFIX$1-h"; }
slurmd_pidfile() { echo "$STATE/slurmd-$(node_name "$1").pid"; }

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

# The bridge, one namespace per node with its veth pair, addresses and hosts file.
# Every step checks or replaces, so `up` after a killed `up` or a half-done `down`
# finishes the job instead of failing on what exists.
setup_network() {
    command -v ip >/dev/null || die "the ip command (iproute2) is missing: apt-get install iproute2"
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge || die "cannot create the bridge $BRIDGE (does this kernel allow network namespaces and bridges?)"
    fi
    ip addr replace "$BRIDGE_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    local i
    for i in $(nodes); do
        setup_node_network "$i"
    done
}

setup_node_network() {
    local ns veth addr
    ns=$(node_name "$1")
    veth=$(host_veth "$1")
    addr=$(node_addr "$1")
    # A name under /run/netns that no longer holds a namespace (e.g. /run was
    # emptied while the name's file stayed) is removed and made again.
    if ip netns list | awk '{print $1}' | grep -qx "$ns" && ! ip -n "$ns" link show lo >/dev/null 2>&1; then
        ip netns del "$ns" 2>/dev/null || rm -f "/run/netns/$ns"
    fi
    if ! ip netns list | awk '{print $1}' | grep -qx "$ns"; then
        ip netns add "$ns" || die "cannot create the network namespace $ns"
    fi
    # Both ends, or a fresh pair: a namespace made again (its slurmd killed, or the
    # name deleted while a process held it) has lost its end.
    if ! ip link show "$veth" >/dev/null 2>&1 || ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
        ip link del "$veth" 2>/dev/null || true
        ip -n "$ns" link del eth0 2>/dev/null || true
        ip link add "$veth" type veth peer name eth0 netns "$ns" || die "cannot create the veth pair $veth for $ns"
    fi
    ip link set "$veth" master "$BRIDGE"
    ip link set "$veth" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr replace "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    # Every address of the root namespace (not only the bridge's) is reachable.
    ip -n "$ns" route replace default via "$BRIDGE_ADDR"
    # No temporary file here: `ip netns exec` mounts every file of this folder.
    # A file bind-mounted on a node (its slurmd's /etc/hosts) keeps its inode:
    # rewrite it in place, never replace it.
    mkdir -p "/etc/netns/$ns"
    {
        echo "127.0.0.1 localhost"
        echo "$BRIDGE_ADDR $CONTROLLER"
        local j
        for j in $(nodes); do
            echo "$(node_addr "$j") $(node_name "$j")"
        done
    } >"/etc/netns/$ns/hosts"
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
    local mem_mb gpus gres_line="" gres_types="" node_lines="" i
    mem_mb=$(awk -v n="$NODE_COUNT" '/MemTotal/ {print int($2 / 1024 * 0.9 / n)}' /proc/meminfo)
    gpus=$(gpu_count)
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d"
    if [ "$gpus" -gt 0 ]; then
        gres_types="GresTypes=gpu"
        gres_line="Gres=gpu:$gpus"
        {
            echo "$MARKER"
            echo "NodeName=${PREFIX}[1-$NODE_COUNT] Name=gpu File=/dev/nvidia[0-$((gpus - 1))]"
        } >/etc/slurm/gres.conf
    fi
    for i in $(nodes); do
        node_lines+="NodeName=$(node_name "$i") NodeAddr=$(node_addr "$i") NodeHostname=$(node_name "$i") CPUs=$cpus RealMemory=$mem_mb $gres_line State=UNKNOWN"$'\n'
    done
    local tmp="$CONF.tmp.$$"
    # %n in the slurmd paths is the node's name: each node its own spool, pid and log.
    # LLN (least loaded node) on the partition: independent one-node jobs, such as the
    # tasks of a worker array, spread over the nodes instead of packing onto the first
    # (on a real cluster a worker takes a node's GPUs, which spreads them as well).
    cat >"$tmp" <<CONF
$MARKER
ClusterName=expcluster-local
SlurmctldHost=$CONTROLLER($BRIDGE_ADDR)
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
SlurmdSpoolDir=$STATE/d/%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd-%n.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
$gres_types
${node_lines}PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP LLN=YES
CONF
    if ! cmp -s "$tmp" "$CONF" 2>/dev/null; then
        mv "$tmp" "$CONF"
        CONFIG_CHANGED=1
    else
        rm -f "$tmp"
    fi
}

# The node's slurmd runs, in the node's namespace: not a leftover of a namespace that
# was deleted and made again, which nothing could reach.
slurmd_running() {
    local file
    file=$(slurmd_pidfile "$1")
    alive "$file" && [ "$(ip netns identify "$(cat "$file")" 2>/dev/null)" = "$(node_name "$1")" ]
}

start_slurmd() {
    local ns
    ns=$(node_name "$1")
    mkdir -p "$STATE/d/$ns"
    say "starting slurmd of $ns ($(node_addr "$1"))"
    # slurmd forks into the background and keeps the namespaces (network, host name,
    # a private mount namespace with the node's /etc/hosts); so do the jobs it starts.
    # Not `ip netns exec`: it mounts a fresh /sys, without the cgroup mounts that
    # slurmd's cgroup plugin needs to start even with proctrack/linuxproc.
    # shellcheck disable=SC2016 # $1 is the inner shell's
    nsenter --net="/run/netns/$ns" unshare --uts --mount sh -c \
        'mount --bind "/etc/netns/$1/hosts" /etc/hosts && hostname "$1" && exec slurmd -N "$1"' sh "$ns" ||
        die "slurmd of $ns did not start: see $STATE/slurmd-$ns.log"
}

wait_nodes_ready() {
    local i node state ready
    for _ in $(seq 150); do
        ready=1
        for i in $(nodes); do
            node=$(node_name "$i")
            state=$(sinfo -h -n "$node" -o %T 2>/dev/null | head -n1 || true)
            case "$state" in
                *'*') ready=0 ;; # not responding (yet)
                idle* | mixed* | allocated* | completing*) ;;
                down* | drain*)
                    ready=0
                    scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
                    ;;
                *) ready=0 ;;
            esac
        done
        [ "$ready" = 1 ] && return 0
        sleep 0.2
    done
    die "the nodes did not all become ready ($(sinfo -h -N -o '%N=%T' 2>/dev/null | tr '\n' ' ')): see $STATE/slurmctld.log and $STATE/slurmd-<node>.log"
}

up() {
    require_root up
    install_packages
    start_munge
    setup_network
    CONFIG_CHANGED=0
    write_config
    if [ "$CONFIG_CHANGED" = 1 ]; then
        say "config changed: restarting the Slurm daemons"
        stop_daemons
    fi
    if ! alive "$STATE/slurmctld.pid"; then
        say "starting slurmctld"
        slurmctld || die "slurmctld did not start: see $STATE/slurmctld.log"
    fi
    local i
    for i in $(nodes); do
        if ! slurmd_running "$i"; then
            stop_pidfile "$(slurmd_pidfile "$i")" "stale slurmd of $(node_name "$i")"
            start_slurmd "$i"
        fi
    done
    wait_nodes_ready
    say "Slurm is up: nodes $(sinfo -h -N -o '%N(%o)' | sort -u | tr '\n' ' ')partition debug, controller $CONTROLLER at $BRIDGE_ADDR"
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

# Every slurmd this script may have started: the nodes' (also those of a larger
# EXPCLUSTER_SLURM_NODES before), and the single root-namespace slurmd of the
# one-node version of this script.
stop_daemons() {
    local file
    for file in "$STATE"/slurmd-"$PREFIX"*.pid "$STATE/slurmd.pid"; do
        [ -e "$file" ] && stop_pidfile "$file" "slurmd ($(basename "$file" .pid))"
    done
    stop_pidfile "$STATE/slurmctld.pid" slurmctld
}

# The namespaces, their veth pairs, the bridge and the hosts files.
remove_network() {
    local ns pid i
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$PREFIX[1-9]\$" || true); do
        # What still runs on the node (a job step that outlived its slurmd) was
        # started by this cluster.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -9 "$pid" 2>/dev/null || true
        done
        say "removing the namespace $ns"
        ip netns del "$ns" || true
        rm -rf "/etc/netns/$ns"
    done
    for i in $(seq 1 9); do
        ip link del "$(host_veth "$i")" >/dev/null 2>&1 || true
    done
    ip link del "$BRIDGE" >/dev/null 2>&1 || true
    # Only when empty: other harnesses keep their hosts files here too.
    rmdir /etc/netns 2>/dev/null || true
}

down() {
    require_root down
    if alive "$STATE/slurmctld.pid"; then
        scancel --full --state=RUNNING,PENDING --partition debug 2>/dev/null || true
    fi
    stop_daemons
    stop_pidfile /run/munge/munged.pid munged
    remove_network
}

status() {
    if sinfo -h >/dev/null 2>&1; then
        sinfo -N -o '%N %o %T %c'
    else
        echo "local Slurm is not running (start it with $0 up)"
        return 1
    fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    address) echo "$BRIDGE_ADDR" ;;
    *) die "usage: $0 up|down|status|address" ;;
esac
