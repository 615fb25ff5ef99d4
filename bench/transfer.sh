#!/usr/bin/env bash
# bench/transfer.sh: ferry's file transfer speed against the tools it replaces.
#
# Everything runs on 127.0.0.1 with every file on tmpfs, so the numbers are
# the tools' own cost (CPU, copies, syscalls, round trips), not a disk's:
#
#   1. one large file (SIZE_MB MiB, default 2048): ferry put/get in plaintext
#      and over TLS, against the ceiling (a raw socat pipe plus an fsync of
#      the copy, the same durable work), scp (default cipher and
#      aes128-gcm), rsync -a over ssh and the rsync daemon;
#   2. a tree of TREE_FILES files of 4 KiB (default 10,000, 100 per
#      directory): ferry put -r / get -r over TLS against rsync -a over ssh
#      and scp -r.
#
# Every client command is timed whole (start-up, handshake, transfer, fsync,
# exit) RUNS times (default 3), in rounds that run each tool once, so load
# from elsewhere falls on all of them alike. The report gives the median
# wall time, which the targets are judged on, and the CPU time both ends
# used, which a busy machine disturbs less. Each tool's first copy is
# checked (sha256 of the file; count and sha256 of the tree), and the
# destination is emptied before every run, since ferry skips files already
# there and refuses ones that differ.
#
# Usage: bench/transfer.sh [SIZE_MB]          (run as root: it starts an sshd)
#
# Environment:
#   SIZE_MB=2048       large file size in MiB (the issue's headline uses 1024)
#   RUNS=3             timed runs per measurement
#   TREE_FILES=10000   files in the small-file tree (4 KiB each, 100 per dir)
#   FERRY=...          the binary [default: target/release/ferry of this repo,
#                      built with cargo if missing]
#   SKIP_INSTALL=1     do not apt-get install missing tools
#   SECTIONS="large tree"  which parts to run
#   CMD_TIMEOUT=300    seconds any single command may take
#   TOTAL_TIMEOUT=3600 seconds the whole bench may take
#   TMPFS=/dev/shm     tmpfs to work in; if it is not a tmpfs with room, a
#                      tmpfs is mounted under a temporary directory instead
#   WARM_MB=...        MiB written to the tmpfs and removed again before every
#                      timed run [default: SIZE_MB + 512]; 0 skips it. On a
#                      VM that hands freed memory back to its host, touching a
#                      page the guest freed a while ago costs a fault in the
#                      host too, and how many pages of a run pay it varies, so
#                      run times spread widely without it (bench/RESULTS.md).
#                      Every tool gets the same warm-up.
#
# Exit status: 0 all targets met, 1 a target missed, 2 a copy was wrong or
# the bench failed. The ssh server is private: its own config, host key and
# authorized key in the temporary directory, on a free port of 127.0.0.1.

# Functions run through traps, eval and $PREP: not unreachable.
# shellcheck disable=SC2317
set -euo pipefail

SIZE_MB=${1:-${SIZE_MB:-2048}}
RUNS=${RUNS:-3}
TREE_FILES=${TREE_FILES:-10000}
TREE_FILE_BYTES=4096
TREE_PER_DIR=100
SECTIONS=${SECTIONS:-large tree}
CMD_TIMEOUT=${CMD_TIMEOUT:-300}
TOTAL_TIMEOUT=${TOTAL_TIMEOUT:-3600}
TMPFS=${TMPFS:-/dev/shm}
SOCAT_BUF=131072
WARM_MB=${WARM_MB:-$((${SIZE_MB} + 512))}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
UTIL="$HERE/transfer_util.py"
# shellcheck source=bench/private_sshd.sh
. "$HERE/private_sshd.sh"

say() { printf '%s\n' "$*" >&2; }
die() { say "transfer.sh: $*"; exit 2; }

[[ $SIZE_MB =~ ^[0-9]+$ && $SIZE_MB -gt 0 ]] || die "SIZE_MB must be a positive number of MiB, not '$SIZE_MB'"
[[ $RUNS =~ ^[0-9]+$ && $RUNS -gt 0 ]] || die "RUNS must be a positive number"
[[ $TREE_FILES =~ ^[0-9]+$ && $TREE_FILES -gt 0 ]] || die "TREE_FILES must be a positive number"

# The whole run is bounded: re-run this script under timeout(1). The EXIT
# trap below still cleans up, as timeout sends TERM first.
if [[ -z ${_TRANSFER_BENCH_BOUNDED:-} ]]; then
    export _TRANSFER_BENCH_BOUNDED=1
    exec timeout --foreground -k 30 "$TOTAL_TIMEOUT" "$BASH" "$0" "$@"
fi

[[ $(id -u) == 0 ]] || die "run as root: it starts a private sshd (and may apt-get install)"

# --- tools ----------------------------------------------------------------

SSHD=/usr/sbin/sshd
missing=()
command -v socat >/dev/null || missing+=(socat)
[[ -x $SSHD ]] || missing+=(openssh-server)
command -v ssh >/dev/null && command -v scp >/dev/null && command -v ssh-keygen >/dev/null ||
    missing+=(openssh-client)
command -v rsync >/dev/null || missing+=(rsync)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    [[ ${SKIP_INSTALL:-0} == 1 ]] && die "missing: ${missing[*]} (and SKIP_INSTALL=1)"
    say "installing: ${missing[*]}"
    # Keep the packages' services (sshd on port 22) from starting: this bench
    # listens on 127.0.0.1 only. policy-rc.d is consulted by invoke-rc.d.
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    installed=0
    apt-get update -q && apt-get install -y -q socat openssh-server openssh-client rsync python3 && installed=1
    if ((made_policy)); then rm -f "$policy"; fi
    ((installed)) || die "apt-get install failed"
fi

if [[ -z ${FERRY:-} ]]; then
    FERRY="$REPO/target/release/ferry"
    if [[ ! -x $FERRY ]]; then
        say "building $FERRY"
        (cd "$REPO" && timeout 1800 cargo build --release --quiet) || die "cargo build --release failed"
    fi
fi
[[ -x $FERRY ]] || die "no ferry binary at $FERRY (set FERRY=...)"

# --- workspace on tmpfs, and cleanup --------------------------------------

PIDS=()
SOCAT_PID=
W=
MOUNTED=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    [[ -n $SOCAT_PID ]] && PIDS+=("$SOCAT_PID")
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        # ferry drains for up to --drain-timeout; sshd and socat exit at once.
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $W ]]; then
        [[ -n $MOUNTED ]] && umount "$MOUNTED" 2>/dev/null
        rm -rf "$W"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'say "transfer.sh: terminated (by TOTAL_TIMEOUT=${TOTAL_TIMEOUT}s, or a signal); cleaning up"; exit 143' TERM

# Room for the source, the copy the server serves (a hard link), one
# destination copy and slack; the tree takes 3 copies of 4 KiB pages.
large_mb=0
[[ " $SECTIONS " == *" large "* ]] && large_mb=$SIZE_MB
# The warm-up file is written while the destination is empty.
dest_mb=$((large_mb > WARM_MB ? large_mb : WARM_MB))
need_kb=$(((large_mb + dest_mb + 512) * 1024 + TREE_FILES * 3 * 8))
avail_kb=0
if [[ $(stat -f -c %T "$TMPFS" 2>/dev/null) == tmpfs ]]; then
    avail_kb=$(df -Pk "$TMPFS" | awk 'NR==2 {print $4}')
fi
if ((avail_kb > need_kb)); then
    W=$(mktemp -d "$TMPFS/ferry-transfer-bench.XXXXXX")
else
    W=$(mktemp -d /tmp/ferry-transfer-bench.XXXXXX)
    mount -t tmpfs -o "size=$((need_kb + 65536))k,mode=700" ferry-bench "$W" ||
        die "$TMPFS is not a tmpfs with $((need_kb / 1024)) MiB free, and mounting one failed"
    MOUNTED=$W
fi
mem_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
((mem_kb > need_kb + 1048576)) || die "needs about $((need_kb / 1024 + 1024)) MiB of free memory for tmpfs, has $((mem_kb / 1024))"

mkdir -p "$W"/{src,srv,dst,log,times,cpu,ssh,rsyncd,config,state-home}
chmod 700 "$W"
RESULTS="$W/results.tsv"
: >"$RESULTS"
# Nothing of this run touches the real home: ferry pins certificates in
# $XDG_CONFIG_HOME/ferry/known_hosts, ssh uses its own -F config.
export XDG_CONFIG_HOME="$W/config" XDG_STATE_HOME="$W/state-home"
unset FERRY_SERVER FERRY_TOKEN FERRY_FINGERPRINT FERRY_PLAINTEXT

# Runs a command with the per-command time limit.
to() { timeout -k 5 "$CMD_TIMEOUT" "$@"; }

# Starts a long-running server in the background, tied to this shell
# (it gets TERM if the bench dies without its trap), and records its PID.
spawn() {
    local log=$1
    shift
    setpriv --pdeathsig TERM "$@" >"$log.out" 2>"$log.err" &
    PIDS+=($!)
}

# Waits until FILE has a line matching REGEX (the server said it is ready).
wait_for_line() {
    local file=$1 regex=$2 pid=$3
    for _ in $(seq 200); do
        grep -Eq "$regex" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$file" "${file%.*}.err" >&2 2>/dev/null; die "server $pid exited early"; }
        sleep 0.05
    done
    die "timed out waiting for /$regex/ in $file"
}

port() { python3 "$UTIL" free-port; }

# --- timing ---------------------------------------------------------------

# CPU time in clock ticks, from /proc/PID/stat: "self" is the process's
# own (all its threads), "children" what its reaped children used. Wall
# time on a busy machine depends on who else runs; CPU time much less.
ticks() {
    local stat mode=$2
    stat=$(<"/proc/$1/stat") || { echo 0; return; }
    stat=${stat##*) } # after "pid (comm) ", field 3 (state) is $1
    # shellcheck disable=SC2086
    set -- $stat
    if [[ $mode == self ]]; then echo $((${12} + ${13})); else echo $((${14} + ${15})); fi
}
TICK_NS=$((1000000000 / $(getconf CLK_TCK)))

# queue LABEL KIND CHECK_PATH CMD...: adds a measurement of CMD (a command
# or shell function); run_queue then runs every queued one once per round,
# RUNS rounds, so a burst of load from elsewhere hits all tools alike
# rather than all runs of one. Before each run the destinations are
# emptied and the optional $PREP runs (untimed). The first copy is checked
# against the source: KIND file or tree. $PEER ("PID self|children") says
# where the far end's CPU time shows; the near end's (clients, socat) is
# what this shell's reaped children used.
Q_LABEL=() Q_KIND=() Q_CHECK=() Q_PEER=() Q_PREP=() Q_CMD=()
queue() {
    Q_LABEL+=("$1") Q_KIND+=("$2") Q_CHECK+=("$3") Q_PEER+=("${PEER:-}") Q_PREP+=("${PREP:-}")
    shift 3
    Q_CMD+=("$(printf '%q ' "$@")")
}

run_queue() {
    local round q
    for ((round = 1; round <= RUNS; round++)); do
        say "-- round $round of $RUNS"
        for q in "${!Q_LABEL[@]}"; do
            run_once "$round" "${Q_LABEL[q]}" "${Q_KIND[q]}" "${Q_CHECK[q]}" "${Q_PEER[q]}" "${Q_PREP[q]}" "${Q_CMD[q]}"
        done
    done
    Q_LABEL=() Q_KIND=() Q_CHECK=() Q_PEER=() Q_PREP=() Q_CMD=()
}

run_once() {
    local round=$1 label=$2 kind=$3 check=$4 prep=$6 cmd=$7
    local t0 t1 got want c0 c1 p0 p1 peer
    read -ra peer <<<"$5"
    clear_dst
    warm_memory
    [[ -n $prep ]] && $prep
    c0=$(ticks $$ children)
    p0=0
    ((${#peer[@]})) && p0=$(ticks "${peer[@]}")
    t0=$(date +%s%N)
    eval "$cmd" || die "$label: run $round failed (exit $?): $cmd"
    t1=$(date +%s%N)
    c1=$(ticks $$ children)
    # Let the far end reap its per-connection processes (sshd, rsyncd).
    p1=0
    ((${#peer[@]})) && sleep 0.3 && p1=$(ticks "${peer[@]}")
    echo $((t1 - t0)) >>"$W/times/$label"
    echo "$(((c1 - c0) * TICK_NS)) $(((p1 - p0) * TICK_NS))" >>"$W/cpu/$label"
    say "   $(awk -v l="$label" -v ns=$((t1 - t0)) -v c=$(((c1 - c0) * TICK_NS)) -v p=$(((p1 - p0) * TICK_NS)) \
        'BEGIN {printf "%-26s %7.3f s  (cpu: client %.2f s, server %.2f s)", l, ns / 1e9, c / 1e9, p / 1e9}')"
    if ((round == 1)); then
        if [[ $kind == file ]]; then
            want=$LARGE_SUM
            got=$(python3 "$UTIL" hash-file "$check" 2>/dev/null || echo "missing")
        else
            want=$TREE_SUM
            got=$(python3 "$UTIL" hash-tree "$check" 2>/dev/null || echo "missing")
        fi
        if [[ $got == "$want" ]]; then
            printf '%s\tverified\n' "$label" >>"$RESULTS"
        else
            printf '%s\tWRONG\n' "$label" >>"$RESULTS"
            say "   WRONG COPY at $check: got '$got', want '$want'"
        fi
    fi
}

# Writes WARM_MB MiB to the tmpfs and frees them, so the run that follows
# takes pages the host still backs (see WARM_MB above).
warm_memory() {
    ((WARM_MB > 0)) || return 0
    head -c "${WARM_MB}M" /dev/zero >"$W/warm" && rm -f "$W/warm"
}

# Destinations, emptied before each run: the client side and the part of
# the served root that uploads go to. Sources are never touched.
clear_dst() {
    rm -rf "$W/dst" "$W/srv/put" "$W/rsyncd/put"
    mkdir -p "$W/dst" "$W/rsyncd/put"
}

# --- servers --------------------------------------------------------------

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "== setup in $W (tmpfs${MOUNTED:+, mounted here})"
say "ferry: $FERRY ($("$FERRY" --version))"

# ferry: one plaintext and one TLS server over the same root. (Not in a
# $(...) subshell: the server must be this shell's child.)
start_ferry() {
    local name=$1
    shift
    spawn "$W/log/$name" "$FERRY" serve --no-udp-time --listen 127.0.0.1:0 --root "$W/srv" --state "$W/state-$name" "$@"
    wait_for_line "$W/log/$name.out" '^listening ' "${PIDS[-1]}"
}
start_ferry plain --plaintext
PLAIN_PID=${PIDS[-1]}
PLAIN_ADDR=$(awk '/^listening / {print $2; exit}' "$W/log/plain.out")
PLAIN_TOKEN=$(cat "$W/state-plain/token")
start_ferry tls
TLS_PID=${PIDS[-1]}
TLS_ADDR=$(awk '/^listening / {print $2; exit}' "$W/log/tls.out")
TLS_TOKEN=$(cat "$W/state-tls/token")
# Where each tool's far end spends CPU, for queue's $PEER.
PLAIN_PEER="$PLAIN_PID self" TLS_PEER="$TLS_PID self"
# --token=VALUE, not --token VALUE: a token can start with '-' (base64url),
# and clap then takes it for an option.
ferry_plain() { to "$FERRY" --server "$PLAIN_ADDR" --plaintext --token="$PLAIN_TOKEN" -q "$@"; }
ferry_tls() { to "$FERRY" --server "$TLS_ADDR" --token="$TLS_TOKEN" -q "$@"; }
# Pin the TLS certificate now, so no timed run pays for the first-use prompt.
ferry_tls echo ready >/dev/null 2>"$W/log/pin.err" || die "ferry TLS server not answering: $(cat "$W/log/pin.err")"
ferry_plain echo ready >/dev/null || die "ferry plaintext server not answering"
say "ferry: plaintext $PLAIN_ADDR, TLS $TLS_ADDR"

# sshd: private keys and config, key-only root login, no PAM.
SSH_PORT=$(port)
private_sshd_files "$W/ssh" 127.0.0.1 "$SSH_PORT"
mkdir -p /run/sshd # sshd's privilege separation directory, normally made by its service
"$SSHD" -t -f "$W/ssh/sshd_config" || die "sshd rejects the bench config"
spawn "$W/log/sshd" "$SSHD" -D -e -f "$W/ssh/sshd_config"
SSHD_PID=${PIDS[-1]}
wait_for_line "$W/log/sshd.err" 'Server listening' "$SSHD_PID"
SSH=(ssh -F "$W/ssh/config")
to "${SSH[@]}" bench true || die "cannot ssh to the private sshd on port $SSH_PORT"
# What one ssh session costs before any data moves, part of every scp and
# rsync-over-ssh time: with the default key exchange (what is timed), and
# with curve25519 alone (the post-quantum sntrup761 hybrid costs CPU).
session_ms() {
    local t0 t1
    t0=$(date +%s%N)
    for _ in 1 2 3 4 5; do to "${SSH[@]}" "$@" bench true; done
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 5000000))
}
SSH_SESSION_MS=$(session_ms)
SSH_SESSION_CURVE_MS=$(session_ms -o KexAlgorithms=curve25519-sha256)
say "sshd: 127.0.0.1:$SSH_PORT (one 'ssh bench true': ${SSH_SESSION_MS} ms, ${SSH_SESSION_CURVE_MS} ms with curve25519-sha256)"
SSH_PEER="$SSHD_PID children" # per-connection sshd and the remote rsync, reaped by the listener
scp_() { to scp -F "$W/ssh/config" -q "$@"; }
rsync_ssh() { to rsync -a -e "ssh -F $W/ssh/config" "$@"; }

# rsync daemon with one writable module.
RSYNCD_PORT=$(port)
cat >"$W/rsyncd/rsyncd.conf" <<EOF
use chroot = no
log file = $W/log/rsyncd.log
[bench]
    path = $W/rsyncd
    read only = no
    uid = root
    gid = root
EOF
spawn "$W/log/rsyncd" rsync --daemon --no-detach --config="$W/rsyncd/rsyncd.conf" --address=127.0.0.1 --port="$RSYNCD_PORT"
RSYNCD_PID=${PIDS[-1]}
for _ in $(seq 100); do
    to rsync "rsync://127.0.0.1:$RSYNCD_PORT/" >/dev/null 2>&1 && break
    kill -0 "${PIDS[-1]}" || die "rsync daemon exited: $(cat "$W/log/rsyncd.err")"
    sleep 0.05
done
RSYNCD_PEER="$RSYNCD_PID children"
say "rsyncd: rsync://127.0.0.1:$RSYNCD_PORT/bench"

# --- 1. one large file ----------------------------------------------------

if [[ " $SECTIONS " == *" large "* ]]; then
    BIG="$W/src/big.bin"
    say "== large file: $SIZE_MB MiB"
    python3 "$UTIL" gen-file "$BIG" "$SIZE_MB"
    ln "$BIG" "$W/srv/big.bin" # what ferry get fetches, without a second copy in memory
    LARGE_SUM=$(python3 "$UTIL" hash-file "$BIG")

    # The ceiling: the bytes through a TCP socket into a new file, then
    # fsync, as ferry does before its rename. The listener is started (not
    # timed) before each run; the timed part is the sender, the listener
    # finishing its writes, and the fsync.
    SOCAT_PORT=$(port)
    socat_listen() {
        socat -d -d -b "$SOCAT_BUF" -u "TCP-LISTEN:$SOCAT_PORT,bind=127.0.0.1,reuseaddr" \
            "OPEN:$W/dst/big.bin,creat,trunc" 2>"$W/log/socat.err" &
        SOCAT_PID=$!
        wait_for_line "$W/log/socat.err" 'listening on' "$SOCAT_PID"
    }
    socat_copy() {
        to socat -b "$SOCAT_BUF" -u "OPEN:$BIG" "TCP:127.0.0.1:$SOCAT_PORT" || return
        wait "$SOCAT_PID" || return
        SOCAT_PID=
        sync "$W/dst/big.bin" # coreutils sync FILE: fsync(2) of that file
    }
    PREP=socat_listen queue large-socat-fsync file "$W/dst/big.bin" socat_copy

    PEER=$PLAIN_PEER queue large-ferry-plain-put file "$W/srv/put/big.bin" ferry_plain put "$BIG" --to put
    PEER=$PLAIN_PEER queue large-ferry-plain-get file "$W/dst/big.bin" ferry_plain get big.bin --to "$W/dst"
    PEER=$TLS_PEER queue large-ferry-tls-put file "$W/srv/put/big.bin" ferry_tls put "$BIG" --to put
    PEER=$TLS_PEER queue large-ferry-tls-get file "$W/dst/big.bin" ferry_tls get big.bin --to "$W/dst"
    PEER=$SSH_PEER queue large-scp-put file "$W/dst/big.bin" scp_ "$BIG" "bench:$W/dst/"
    PEER=$SSH_PEER queue large-scp-get file "$W/dst/big.bin" scp_ "bench:$BIG" "$W/dst/"
    PEER=$SSH_PEER queue large-scp-aes128gcm-put file "$W/dst/big.bin" scp_ -c aes128-gcm@openssh.com "$BIG" "bench:$W/dst/"
    PEER=$SSH_PEER queue large-scp-aes128gcm-get file "$W/dst/big.bin" scp_ -c aes128-gcm@openssh.com "bench:$BIG" "$W/dst/"
    PEER=$SSH_PEER queue large-rsync-ssh-put file "$W/dst/big.bin" rsync_ssh "$BIG" "bench:$W/dst/"
    PEER=$RSYNCD_PEER queue large-rsyncd-put file "$W/rsyncd/put/big.bin" to rsync -a "$BIG" "rsync://127.0.0.1:$RSYNCD_PORT/bench/put/"
    run_queue
    rm -f "$BIG" "$W/srv/big.bin"
    clear_dst
fi

# --- 2. many small files --------------------------------------------------

if [[ " $SECTIONS " == *" tree "* ]]; then
    TREE="$W/src/tree"
    say "== tree: $TREE_FILES files of $TREE_FILE_BYTES B, $TREE_PER_DIR per directory"
    python3 "$UTIL" gen-tree "$TREE" "$TREE_FILES" "$TREE_FILE_BYTES" "$TREE_PER_DIR"
    cp -al "$TREE" "$W/srv/tree" # the served copy for get -r, hard links
    TREE_SUM=$(python3 "$UTIL" hash-tree "$TREE")

    PEER=$TLS_PEER queue tree-ferry-tls-put tree "$W/srv/put/tree" ferry_tls put -r "$TREE" --to put
    PEER=$TLS_PEER queue tree-ferry-tls-get tree "$W/dst/tree" ferry_tls get -r tree --to "$W/dst"
    PEER=$SSH_PEER queue tree-rsync-ssh-put tree "$W/dst/tree" rsync_ssh "$TREE" "bench:$W/dst/"
    PEER=$SSH_PEER queue tree-rsync-ssh-get tree "$W/dst/tree" rsync_ssh "bench:$TREE" "$W/dst/"
    PEER=$SSH_PEER queue tree-scp-put tree "$W/dst/tree" scp_ -r "$TREE" "bench:$W/dst/"
    PEER=$SSH_PEER queue tree-scp-get tree "$W/dst/tree" scp_ -r "bench:$TREE" "$W/dst/"
    run_queue
    clear_dst
fi

# --- report ---------------------------------------------------------------

echo "ferry transfer bench: $(date -u +%FT%TZ), $(nproc) CPUs, $(uname -r), $(
    awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
echo "ferry $("$FERRY" --version | awk '{print $2}') at $FERRY (built $(date -u -r "$FERRY" +%FT%TZ));" \
    "repo HEAD $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(
        git -C "$REPO" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' (src has uncommitted changes)')"
echo "large file $SIZE_MB MiB; tree $TREE_FILES x $TREE_FILE_BYTES B; $RUNS runs each; files on tmpfs;" \
    "${WARM_MB} MiB written and freed before each run"
echo "one ssh session (connect, default key exchange, auth, 'true', exit): ${SSH_SESSION_MS} ms" \
    "(${SSH_SESSION_CURVE_MS} ms with curve25519-sha256)"
echo "load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg)" \
    "(other processes on these $(nproc) CPUs make every number noisier)"
echo "$(ssh -V 2>&1); $(rsync --version | head -1 | awk '{print "rsync", $3}'); $(socat -V | awk '/socat version/ {print "socat", $3; exit}')"
set +e
python3 "$UTIL" report "$W/times" "$W/cpu" "$RESULTS" "LARGE_BYTES=$((SIZE_MB * 1048576))" "TREE_FILES=$TREE_FILES"
status=$?
exit $status
