#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine (Debian 12: slurmctld, slurmd, slurm-client,
# munge; Slurm 22.05), for trying and testing `snakemake --profile profiles/slurm` without a
# cluster. Runs as root and needs no systemd: each daemon runs in the foreground as a background
# job of this script, its PID is recorded, and `down` stops exactly those PIDs.
#
#   sudo cluster/slurm-localhost.sh install  only install the packages (apt, only if missing)
#   sudo cluster/slurm-localhost.sh up       install if missing, configure, start, run a test job
#   sudo cluster/slurm-localhost.sh status   which of our daemons run; sinfo and squeue
#   sudo cluster/slurm-localhost.sh down     cancel the cluster's jobs, stop the daemons we started
#
# Settings (environment):
#   MEMLAB_SLURM_BASE=/tmp/memlab-slurm  state, spool, logs and PID files (wiped by `up`)
#   MEMLAB_SLURM_PARTITION=debug         the partition (profiles/slurm asks for `debug`)
#   MEMLAB_SLURM_WAIT=60                 seconds to wait for each daemon to come up
#   MEMLAB_SLURM_APT_TIMEOUT=900         seconds for apt-get update + install
#   MEMLAB_SLURM_NO_INSTALL=1            never call apt-get (fail if SLURM is missing)
#
# What this cluster is and is not (it mimics a real one where it matters for Snakemake):
# - No slurmdbd, so `sacct` cannot answer: finished jobs stay visible to `squeue` for an hour
#   (MinJobAge) and the executor plugin is told `slurm-status-command: squeue`.
# - Memory requests are enforced: a job step whose processes together use more than the job's
#   `--mem` is killed and the job ends OUT_OF_MEMORY, as with cgroups on a real cluster (here by
#   polling every second: jobacct_gather/linux with OverMemoryKill; no cgroups needed).
# - Runtime requests (`-t`) are enforced (TIMEOUT), CPUs are allocated per core.
# - /etc/slurm/slurm.conf is written by `up` (with a marker line) and removed by `down`; one that
#   this script did not write is never overwritten or removed.
set -euo pipefail

BASE=${MEMLAB_SLURM_BASE:-/tmp/memlab-slurm}
PART=${MEMLAB_SLURM_PARTITION:-debug}
WAIT=${MEMLAB_SLURM_WAIT:-60}
APT_TIMEOUT=${MEMLAB_SLURM_APT_TIMEOUT:-900}
CONF=/etc/slurm/slurm.conf
MARKER="# written by memlab cluster/slurm-localhost.sh"
PIDDIR=$BASE/pids
LOG=$BASE/log
# Stop order (reverse of start order).
DAEMONS=(slurmd slurmctld munged)

say() { echo "[slurm-localhost $(date +%T)] $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

# wait_for SECONDS WHAT CMD...: poll CMD (each try capped at 10 s) until it succeeds.
wait_for() {
    local n=$1 what=$2
    shift 2
    local end=$((SECONDS + n))
    while ((SECONDS < end)); do
        timeout -k 2 10 "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    say "timed out after ${n}s waiting for $what"
    return 1
}

# pid_of NAME: the recorded PID of a daemon we started, if it still runs that program.
pid_of() {
    local f=$PIDDIR/$1.pid p
    [[ -f $f ]] || return 1
    p=$(<"$f")
    [[ $p =~ ^[0-9]+$ ]] || return 1
    # A recycled PID must not be mistaken for ours: check the program name too.
    [[ -r /proc/$p/comm && $(<"/proc/$p/comm") == "$1" ]] || return 1
    echo "$p"
}

# is_ours NAME: the daemon answering is the one whose PID we recorded (so `down` can stop it).
is_ours() {
    pid_of "$1" >/dev/null && return 0
    say "$1 is not running as the recorded pid $(cat "$PIDDIR/$1.pid" 2>/dev/null)"
    return 1
}

# start_bg NAME CMD...: the daemon runs in the foreground of a background job; $! is its PID.
start_bg() {
    local name=$1
    shift
    # setsid: its own session, so a Ctrl-C in the calling shell does not reach it.
    setsid "$@" </dev/null >"$LOG/$name.out" 2>&1 &
    echo $! >"$PIDDIR/$name.pid"
    say "started $name (pid $!)"
}

need_root() { [[ $(id -u) == 0 ]] || die "must run as root (it installs packages and starts daemons)"; }

have_slurm() {
    [[ -x /usr/sbin/slurmctld && -x /usr/sbin/slurmd && -x /usr/sbin/munged ]] &&
        command -v sbatch >/dev/null && command -v munge >/dev/null
}

install() {
    have_slurm && return 0
    [[ ${MEMLAB_SLURM_NO_INSTALL:-0} == 1 ]] && die "SLURM is not installed (MEMLAB_SLURM_NO_INSTALL=1)"
    command -v apt-get >/dev/null || die "SLURM is not installed and apt-get is not available"
    say "installing slurmctld slurmd slurm-client munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    # --no-install-recommends skips openmpi/pmix: they only add harmless "error:" lines.
    timeout -k 10 "$APT_TIMEOUT" bash -c 'apt-get update -q &&
        apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge' \
        >"$BASE/apt.log" 2>&1 || {
        tail -20 "$BASE/apt.log" >&2
        die "apt-get failed (log: $BASE/apt.log)"
    }
    have_slurm || die "apt-get finished but SLURM binaries are missing"
}

configure() {
    local node=$1 cpus mem
    if [[ -e $CONF ]] && ! grep -qxF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; not touching it"
    fi
    rm -rf "$BASE/state" "$BASE/spool" # a fresh cluster every time: job ids restart at 1
    mkdir -p "$BASE/state" "$BASE/spool"
    chmod 755 "$BASE"
    chown slurm:slurm "$BASE/state" "$LOG" # slurmctld drops to SlurmUser=slurm
    # slurmd matches `hostname -s` against NodeName, so the name must resolve.
    if ! getent hosts "$node" >/dev/null; then
        say "adding '127.0.0.1 $node' to /etc/hosts"
        echo "127.0.0.1 $node" >>/etc/hosts
    fi
    # munge: Debian's postinst makes the key; no systemd, so make the runtime dirs ourselves.
    mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
    [[ -s /etc/munge/munge.key ]] || /usr/sbin/mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
    chmod 600 /etc/munge/munge.key
    chmod 755 /run/munge

    # The machine's CPUs: nproc alone obeys OMP_NUM_THREADS (the tests set it to 1 for every
    # process they start), which would make a 1-CPU node that runs one job at a time.
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
    # RealMemory above the real memory would DRAIN the node; leave the OS 20%.
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
    mkdir -p /etc/slurm
    cat >"$CONF" <<EOF
$MARKER
# (base $BASE; rewritten by every \`up\`)
ClusterName=memlab
SlurmctldHost=$node(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/slurmctld.pid
SlurmdPidFile=$BASE/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
# No cgroups (no systemd): processes tracked through /proc, no task containment.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# Memory is enforced by polling each step's processes every second (cgroups do it on a real
# cluster): a step above the job's --mem is killed and the job ends OUT_OF_MEMORY.
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
# No slurmdbd (sacct has nothing to say): finished jobs stay visible to squeue for an hour,
# which the executor plugin's squeue status mode needs.
MinJobAge=3600
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.txt
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PART Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    say "wrote $CONF: node $node, $cpus CPUs, ${mem} MB, partition $PART"
}

start() {
    local node=$1
    if timeout 10 bash -c 'munge -n | unmunge' >/dev/null 2>&1; then
        say "munged already answers; using it (not ours to stop)"
    else
        # setpriv execs (no fork), so $! is munged's own PID; -F keeps it in the foreground.
        start_bg munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F
        wait_for "$WAIT" munged bash -c 'munge -n | unmunge' || return 1
        is_ours munged || return 1
    fi
    start_bg slurmctld /usr/sbin/slurmctld -D -i # -i: ignore missing or old state
    wait_for "$WAIT" slurmctld bash -c 'scontrol ping | grep -q "is UP"' || return 1
    is_ours slurmctld || return 1
    start_bg slurmd /usr/sbin/slurmd -D -N "$node"
    wait_for "$WAIT" "node $node to be idle" bash -c "sinfo -h -n $node -o %t | grep -qx idle" ||
        return 1
    is_ours slurmd || return 1
    # One real job end to end (allocation, munge credentials, step launch).
    timeout -k 5 "$WAIT" srun -N1 -n1 --mem=10 -t 1 -p "$PART" true || {
        say "a test job (srun true) failed"
        return 1
    }
}

up() {
    need_root
    mkdir -p "$BASE" "$PIDDIR" "$LOG"
    if pid_of slurmctld >/dev/null && pid_of slurmd >/dev/null; then
        say "already up (base $BASE)"
        return 0
    fi
    down_daemons # leftovers of a half-started cluster
    local t0=$SECONDS node
    node=$(hostname -s)
    install
    local t1=$SECONDS
    # Someone else's slurmctld (another base, or not ours) would make ours fail or answer for it.
    if [[ -e $CONF ]] && timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; then
        die "a slurmctld already answers here; stop it first (\`$0 down\` with its base)"
    fi
    configure "$node"
    if ! start "$node"; then
        say "start failed; stopping what was started. Logs: $LOG"
        tail -5 "$LOG"/*.out "$LOG"/*.log 2>/dev/null >&2 || true
        down_daemons
        exit 1
    fi
    say "up in $((SECONDS - t0))s (install $((t1 - t0))s, configure+start $((SECONDS - t1))s)"
    timeout 10 sinfo >&2 || true
}

# Cancel every job of this cluster (it is ours: the config was written by us), so that no
# slurmstepd outlives slurmd; wait until they are gone.
cancel_jobs() {
    pid_of slurmctld >/dev/null || return 0
    local ids
    ids=$(timeout 10 squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING -o %i 2>/dev/null) || return 0
    [[ -n $ids ]] || return 0
    say "cancelling jobs: $(echo "$ids" | tr '\n' ' ')"
    # shellcheck disable=SC2086
    timeout 10 scancel $ids || true
    # shellcheck disable=SC2016 # expanded by the inner bash, on every try
    wait_for 30 "jobs to end" bash -c \
        '[[ -z $(squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING -o %i) ]]' || true
}

down_daemons() {
    local name p i
    for name in "${DAEMONS[@]}"; do
        if p=$(pid_of "$name"); then
            kill "$p" 2>/dev/null || true
            for ((i = 0; i < 40; i++)); do
                kill -0 "$p" 2>/dev/null || break
                sleep 0.25
            done
            if kill -0 "$p" 2>/dev/null; then
                say "$name (pid $p) ignored SIGTERM for 10s; SIGKILL"
                kill -9 "$p" 2>/dev/null || true
            fi
            say "stopped $name (pid $p)"
        fi
        rm -f "$PIDDIR/$name.pid"
    done
}

# remove_conf: our slurm.conf goes with the cluster. Left behind, it names a controller that is
# gone, and the SLURM executor plugin, which runs `scontrol show config` whenever Snakemake
# starts, waits 9 s for it on every snakemake command, local runs included.
remove_conf() {
    if [[ -e $CONF ]] && grep -qxF "$MARKER" "$CONF"; then
        rm -f "$CONF"
        say "removed $CONF"
    fi
}

down() {
    need_root
    [[ -d $PIDDIR ]] || {
        say "nothing to stop (no $PIDDIR)"
        remove_conf
        return 0
    }
    cancel_jobs
    down_daemons
    remove_conf
}

status() {
    local name p rc=0
    for name in munged slurmctld slurmd; do
        if p=$(pid_of "$name"); then
            echo "$name: running (pid $p)"
        else
            echo "$name: not running (not started by this script, base $BASE)"
            [[ $name == munged ]] || rc=1
        fi
    done
    if ((rc == 0)); then
        timeout 10 sinfo || rc=1
        timeout 10 squeue --states=all || rc=1
    fi
    return $rc
}

case ${1:-} in
install)
    need_root
    mkdir -p "$BASE"
    install
    ;;
up) up ;;
down) down ;;
status) status ;;
*)
    echo "usage: $0 {install|up|down|status}   (base: \$MEMLAB_SLURM_BASE=$BASE)" >&2
    exit 2
    ;;
esac
