#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for bantzd's Slurm tests and for trying the
# Slurm executor without a cluster: Debian's slurmctld, slurmd, slurm-client and munge, run
# as root without systemd or cgroups, with two fake GPUs (character devices) in gres.conf.
#
#   contrib/slurm/single-node.sh start [DIR]   install what is missing, start, wait until the
#                                             node is idle; prints `export SLURM_CONF=...`
#   contrib/slurm/single-node.sh stop [DIR]    stop the daemons started from DIR
#   contrib/slurm/single-node.sh status [DIR]  exit 0 when the cluster in DIR answers
#   contrib/slurm/single-node.sh stop-ctld [DIR]   stop slurmctld only (jobs go on running:
#                                                  a controller outage, for the tests)
#   contrib/slurm/single-node.sh start-ctld [DIR]  start it again and wait until it answers
#
# DIR defaults to $BANTZ_SLURM_DIR, else /var/tmp/bantzd-slurm. Everything it writes is there,
# except the packages and munge's own folders; `start` on a running cluster only checks it.
set -euo pipefail

cmd=${1:-start}
dir=${2:-${BANTZ_SLURM_DIR:-/var/tmp/bantzd-slurm}}
conf=$dir/slurm.conf
export SLURM_CONF=$conf

say() { printf 'single-node.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

answers() { [ -f "$conf" ] && timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; }

install_packages() {
    local missing=()
    for prog in slurmctld slurmd sbatch munged; do
        command -v "$prog" >/dev/null 2>&1 || [ -x "/usr/sbin/$prog" ] || missing+=("$prog")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}; installing Slurm needs root (apt-get)"
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    say "installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    local pkgs=(slurmctld slurmd slurm-client munge)
    if ! apt-get install -y -q --no-install-recommends "${pkgs[@]}" >"$dir/apt.log" 2>&1; then
        apt-get update -q >>"$dir/apt.log" 2>&1 || true
        apt-get install -y -q --no-install-recommends "${pkgs[@]}" >>"$dir/apt.log" 2>&1 ||
            die "apt-get install failed; see $dir/apt.log"
    fi
}

start_munge() {
    if [ -S /run/munge/munge.socket.2 ] && munge -n </dev/null >/dev/null 2>&1; then
        return 0
    fi
    # munged refuses a socket folder that is not searchable, or a key others can read.
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge /etc/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged --force ||
        die "munged did not start; see /var/log/munge/munged.log"
    for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "munged started but does not answer"
}

write_config() {
    local host node
    host=$(hostname -s)
    # The node as slurmd sees it (CPUs, sockets, cores, memory), then two fake GPUs.
    node=$(slurmd -C | head -n 1)
    [[ $node == NodeName=* ]] || die "slurmd -C printed no NodeName line: $node"
    mkdir -p "$dir/state" "$dir/spool" "$dir/dev"
    for i in 0 1; do
        [ -c "$dir/dev/nvidia$i" ] || mknod "$dir/dev/nvidia$i" c 195 "$i"
    done
    cat >"$conf" <<CONF
# Written by contrib/slurm/single-node.sh: one node, root daemons, no cgroups, no database.
ClusterName=bantzd
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without it a job without --mem takes the whole node's memory, and jobs never share it.
DefMemPerCPU=256
SchedulerType=sched/backfill
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
MailProg=/bin/true
KillWait=5
MinJobAge=300
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=60
$node NodeAddr=127.0.0.1 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=night Nodes=ALL Default=NO MaxTime=INFINITE State=UP
CONF
    sed -i 's/ UpTime=[^ ]*//' "$conf"
    cat >"$dir/gres.conf" <<CONF
Name=gpu File=$dir/dev/nvidia[0-1]
CONF
}

start() {
    mkdir -p "$dir"
    chmod 0755 "$dir"
    if answers; then
        say "a cluster from $dir answers already"
        echo "export SLURM_CONF=$conf"
        return 0
    fi
    [ "$(id -u)" -eq 0 ] || die "starting the daemons needs root"
    install_packages
    start_munge
    write_config
    stop_daemons quietly
    /usr/sbin/slurmctld -i -f "$conf" || die "slurmctld did not start; see $dir/slurmctld.log"
    /usr/sbin/slurmd -f "$conf" || die "slurmd did not start; see $dir/slurmd.log"
    for _ in $(seq 150); do
        if answers && sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            # A node that was down in an earlier run of this folder's state comes back.
            echo "export SLURM_CONF=$conf"
            return 0
        fi
        scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true
        sleep 0.2
    done
    sinfo -N -l >&2 || true
    die "the node did not become idle; see $dir/slurmctld.log and $dir/slurmd.log"
}

stop_daemons() {
    local pidfile pid
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid"; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile" 2>/dev/null || true)
        if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -f "$pidfile"
    done
    [ "${1:-}" = quietly ] || say "stopped the daemons of $dir"
}

stop_ctld() {
    local pid
    pid=$(cat "$dir/slurmctld.pid" 2>/dev/null || true)
    [ -n "$pid" ] || die "no slurmctld pidfile in $dir"
    kill "$pid" 2>/dev/null || die "slurmctld $pid is not running"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    die "slurmctld $pid did not stop"
}

start_ctld() {
    answers && return 0
    /usr/sbin/slurmctld -i -f "$conf" || die "slurmctld did not start; see $dir/slurmctld.log"
    for _ in $(seq 150); do
        # Answering, with the node back (it is `unk` until slurmd registers again).
        if answers && sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            return 0
        fi
        sleep 0.2
    done
    die "slurmctld started but does not answer with its node; see $dir/slurmctld.log"
}

case $cmd in
    start) start ;;
    stop) stop_daemons ;;
    status) answers ;;
    stop-ctld) stop_ctld ;;
    start-ctld) start_ctld ;;
    *) die "usage: $0 start|stop|status|stop-ctld|start-ctld [DIR]" ;;
esac
