#!/usr/bin/env bash
# bench/wan.sh: ferry against scp, rsync and raw TCP over emulated long links.
#
# On loopback one TCP stream is never the limit; on a long link it is (one
# window per round trip, halved by a loss). This bench builds such links
# with wanem, the tool in ../shared/wanem/ beside the repo (two network
# namespaces joined through TUN devices with a delay, a rate, loss and a
# queue, since these kernels have no netem). ferry serve (TLS) and a
# private sshd run in the server's namespace (ferry listening for TLS over
# TCP and, unless QUIC=0, for QUIC on the same port number over UDP), every
# client in the other, and at each profile (default: 50 ms RTT 1 Gbit/s;
# 100 ms RTT 100 Mbit/s with 1% loss; 10 ms RTT 1 Gbit/s; 50 ms RTT
# 100 Mbit/s with 1% loss) it times, in one run:
#
#   big    one SIZE_MB MiB file fetched: one socat stream (the ceiling of a
#          single TCP connection), four socat streams of a quarter each (the
#          reference several streams can reach), ferry get (streams chosen
#          from the round trip), ferry get --streams 1, ferry get over QUIC
#          (ferry-quic, streams chosen alike), ferry put (the file the other
#          way, streams chosen alike), scp, and rsync -a over ssh;
#   tree   TREE_FILES files of 4 KiB fetched: tar through one socat stream,
#          ferry get -r, scp -r, rsync -a over ssh;
#   exec   a command on a new connection: ferry exec -- true over TLS and
#          over QUIC (ferry-quic), ssh bench true; also given in round trips
#          (the time over the profile's RTT).
#
# Every client command is timed whole (process start to exit, including the
# `ip netns exec` that puts it on the link, the same few ms for every tool),
# in rounds that run each tool once, so load from elsewhere falls on all of
# them alike. Each tool's first copy is checked (sha256 of the file; count
# and sha256 of the tree). The report gives the median and its ratio to one
# socat stream and to scp (ssh for exec), then the goals of issue #17:
#
#   - 50 ms, 1 Gbit/s: the big get takes at most 0.7x one socat stream;
#   - 100 ms, 100 Mbit/s, 1% loss: the big get at least 2x as fast as scp;
#   - every profile: the big get no slower than one socat stream (within
#     SLACK_PCT, as two runs of the same stream differ by that much);
#
# and of issue #15 (QUIC):
#
#   - 50 ms, 100 Mbit/s, 1% loss: the big get over QUIC at least as fast as
#     over TLS (the issue's figure is a 64 MiB file: SIZE_MB=64);
#   - every profile with exec: ferry exec over QUIC on a new connection in
#     fewer round trips than over TLS.
#
# Usage: bench/wan.sh          (as root: namespaces, TUN devices and an sshd)
#
# Environment:
#   SIZE_MB=128        size of the big file in MiB
#   RUNS=3             timed runs of each big and tree measurement
#   EXEC_RUNS=10       timed runs of each exec measurement (each is short)
#   TREE_FILES=1000    files in the tree (4 KiB each, 100 per directory)
#   PROFILES="50:1000:0 100:100:1 10:1000:0 50:100:1"
#                      links as RTT_MS:RATE_MBIT:LOSS_PCT (even RTT)
#   SECTIONS="big tree exec"  which workloads to run
#   QUIC=1             0 leaves ferry over QUIC out (no --quic, no
#                      ferry-quic runs; issue #15's goals are SKIPs)
#   SLACK_PCT=10       margin of the "no slower than one stream" goal
#   WANEM_DIR=...      wanem's directory [default: ../shared/wanem from the
#                      repo's root]
#   WAN_A, WAN_B       the namespaces' names [default: unique to this run,
#                      so a run elsewhere on the machine is never touched]
#   FERRY=...          the binary [default: target/release/ferry of this repo,
#                      built with cargo if missing]
#   CMD_TIMEOUT=1200   seconds any single command may take (scp -r of the
#                      tree at 100 ms takes the longest, several minutes)
#   TOTAL_TIMEOUT=...  seconds the whole bench may take [default:
#                      1800 + 600 x RUNS x the number of profiles]
#   TMPFS=/dev/shm     where the temporary directory goes if it is a tmpfs
#                      (else /tmp), so no disk is in the way
#
# Exit status: 0 every goal met, 1 a goal missed, 2 a copy was wrong or the
# bench failed. Everything it writes is in its temporary directory, removed
# on exit with the namespaces and every process it started; the one thing
# outside is /run/sshd, sshd's own directory, made if missing and then
# removed again.

# Functions run through traps and `step`: not unreachable.
# shellcheck disable=SC2317
set -euo pipefail

SIZE_MB=${SIZE_MB:-128}
RUNS=${RUNS:-3}
EXEC_RUNS=${EXEC_RUNS:-10}
TREE_FILES=${TREE_FILES:-1000}
TREE_FILE_BYTES=4096
TREE_PER_DIR=100
PROFILES=${PROFILES:-50:1000:0 100:100:1 10:1000:0 50:100:1}
SECTIONS=${SECTIONS:-big tree exec}
QUIC=${QUIC:-1}
SLACK_PCT=${SLACK_PCT:-10}
CMD_TIMEOUT=${CMD_TIMEOUT:-1200}
TMPFS=${TMPFS:-/dev/shm}
SOCAT_BUF=131072

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
UTIL="$HERE/transfer_util.py"
REPORT="$HERE/wan_report.py"
WANEM_DIR=${WANEM_DIR:-$REPO/../shared/wanem}
# shellcheck source=bench/private_sshd.sh
. "$HERE/private_sshd.sh"

say() { printf '%s\n' "$*" >&2; }
die() {
    say "wan.sh: $*"
    exit 2
}

for v in SIZE_MB RUNS EXEC_RUNS TREE_FILES SLACK_PCT CMD_TIMEOUT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number, not '${!v}'"
done
[[ $QUIC =~ ^[01]$ ]] || die "QUIC must be 0 or 1, not '$QUIC'"
read -ra PROFILE_LIST <<<"$PROFILES"
TOTAL_TIMEOUT=${TOTAL_TIMEOUT:-$((1800 + 600 * RUNS * ${#PROFILE_LIST[@]}))}
[[ $TOTAL_TIMEOUT =~ ^[0-9]+$ ]] || die "TOTAL_TIMEOUT must be a number, not '$TOTAL_TIMEOUT'"
((SIZE_MB > 0 && RUNS > 0 && EXEC_RUNS > 0 && TREE_FILES > 0)) ||
    die "SIZE_MB, RUNS, EXEC_RUNS and TREE_FILES must be positive"
for p in $PROFILES; do
    [[ $p =~ ^([0-9]+):([0-9]+):([0-9]+(\.[0-9]+)?)$ ]] ||
        die "a profile is RTT_MS:RATE_MBIT:LOSS_PCT (like 100:100:1), not '$p'"
    ((BASH_REMATCH[1] > 0 && BASH_REMATCH[1] % 2 == 0 && BASH_REMATCH[2] > 0)) ||
        die "profile '$p': the RTT must be even (wanem delays each way by half) and the rate positive"
done
for s in $SECTIONS; do
    [[ $s =~ ^(big|tree|exec)$ ]] || die "SECTIONS takes big, tree and exec, not '$s'"
done

# The whole run is bounded: re-run this script under timeout(1). Long steps
# run in the background (see `step`), so its TERM reaches the trap below at
# once and the namespaces go with everything else.
if [[ -z ${_WAN_BENCH_BOUNDED:-} ]]; then
    export _WAN_BENCH_BOUNDED=1
    exec timeout --foreground -k 60 "$TOTAL_TIMEOUT" "$BASH" "$0" "$@"
fi

[[ $(id -u) == 0 ]] || die "run as root: it makes network namespaces and TUN devices, and starts an sshd"

# --- tools ----------------------------------------------------------------

SSHD=/usr/sbin/sshd
[[ -x $SSHD ]] || die "no $SSHD (apt-get install openssh-server)"
for tool in ip socat ssh scp ssh-keygen rsync tar python3 setpriv timeout cc; do
    command -v "$tool" >/dev/null || die "no $tool (apt-get install iproute2 socat openssh-client rsync tar python3 util-linux gcc)"
done
[[ -x $WANEM_DIR/wan.sh && -f $WANEM_DIR/wanem.c ]] ||
    die "no wanem at $WANEM_DIR (it lives in ../shared/wanem beside the repo; set WANEM_DIR)"
WANEM_DIR=$(cd "$WANEM_DIR" && pwd)
[[ -c /dev/net/tun ]] || die "no /dev/net/tun: wanem needs TUN devices"

if [[ -z ${FERRY:-} ]]; then
    FERRY="$REPO/target/release/ferry"
    if [[ ! -x $FERRY ]]; then
        say "building $FERRY"
        (cd "$REPO" && timeout 1800 cargo build --release --quiet) || die "cargo build --release failed"
    fi
fi
[[ -x $FERRY ]] || die "no ferry binary at $FERRY (set FERRY=...)"
FERRY=$(realpath "$FERRY")

# --- names, the temporary directory, and cleanup --------------------------

# Unique names: wan.sh down deletes its namespaces by name, and must never
# take another run's.
export WAN_A=${WAN_A:-ferry-wan-a-$$} WAN_B=${WAN_B:-ferry-wan-b-$$}
for ns in "$WAN_A" "$WAN_B"; do
    [[ ! -e /var/run/netns/$ns ]] || die "network namespace $ns exists already (another run?); set WAN_A and WAN_B"
done
A_ADDR=10.199.0.1 B_ADDR=10.199.0.2 # wanem's fixed addresses
ON_A=(ip netns exec "$WAN_A")
ON_B=(ip netns exec "$WAN_B")

W=
SERVER_PIDS=()   # ferry serve and sshd of the current profile, by PID
PIDS=()          # what spawn started last: socat listeners, new servers
STEP_PID=        # the timed command running now
LINK_UP=0        # wan.sh up was called: its namespaces may exist
MADE_RUN_SSHD=0
stop_pid() {
    kill -TERM "$1" 2>/dev/null || return 0
    # ferry drains for up to --drain-timeout; sshd and socat exit at once.
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
# A timed step's processes: the subshell running the tool's function, and
# below it timeout(1), the client and (for four streams) its siblings.
descendants() {
    local child
    # shellcheck disable=SC2013 # the file is PIDs separated by spaces
    for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}
stop_step() {
    local pid
    for pid in $(descendants "$1") "$1"; do kill -TERM "$pid" 2>/dev/null; done
    stop_pid "$1"
}
stop_servers() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
}
link_down() {
    ((LINK_UP)) || return 0
    LINK_UP=0
    "$WANEM_DIR/wan.sh" down >"$W/log/wanem-$1.txt" 2>&1 || say "wan.sh down failed: $(cat "$W/log/wanem-$1.txt")"
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    [[ -n $STEP_PID ]] && stop_step "$STEP_PID"
    PIDS+=("${SERVER_PIDS[@]}")
    stop_servers
    link_down cleanup
    ((MADE_RUN_SSHD)) && rmdir /run/sshd 2>/dev/null
    [[ -n $W ]] && rm -rf "$W"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'say "wan.sh: terminated (by TOTAL_TIMEOUT=${TOTAL_TIMEOUT}s, or a signal); cleaning up"; exit 143' TERM

if [[ $(stat -f -c %T "$TMPFS" 2>/dev/null) == tmpfs ]]; then
    W=$(mktemp -d "$TMPFS/ferry-wan-bench.XXXXXX")
else
    W=$(mktemp -d /tmp/ferry-wan-bench.XXXXXX)
fi
chmod 700 "$W"
mkdir -p "$W"/{srv,dst,log,config,state-home,wanem}
: >"$W/times.tsv"
: >"$W/checks.tsv"
# Nothing of this run touches the real home: ferry pins certificates in
# $XDG_CONFIG_HOME/ferry/known_hosts, ssh uses its own -F config; wanem is
# built and keeps its pid and counters here too.
export XDG_CONFIG_HOME="$W/config" XDG_STATE_HOME="$W/state-home"
export WAN_RUN="$W/wanem"
unset FERRY_SERVER FERRY_TOKEN FERRY_TOKEN_FILE FERRY_FINGERPRINT FERRY_PLAINTEXT RUST_LOG

# Runs a command with the per-command time limit.
to() { timeout -k 5 "$CMD_TIMEOUT" "$@"; }

# Runs a command (or function) in the background and waits for it: bash
# runs a TERM trap only between commands, and `wait` is one it interrupts.
step() {
    "$@" </dev/null &
    STEP_PID=$!
    local rc=0
    wait "$STEP_PID" || rc=$?
    STEP_PID=
    return "$rc"
}

# Starts a server in the background, tied to this shell (it gets TERM if
# the bench dies without its trap), and records its PID.
spawn() {
    local log=$1
    shift
    setpriv --pdeathsig TERM "$@" </dev/null >"$log.out" 2>"$log.err" &
    PIDS+=($!)
}

# Waits until FILE has a line matching REGEX (the server said it is ready).
wait_for_line() {
    local file=$1 regex=$2 pid=$3
    for _ in $(seq 200); do
        grep -Eq "$regex" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || die "server $pid exited early: $(cat "$file" "${file%.*}.err" 2>/dev/null)"
        sleep 0.05
    done
    die "timed out waiting for /$regex/ in $file"
}

# --- test data, made once ----------------------------------------------------

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "== setup in $W"
say "ferry: $FERRY ($("$FERRY" --version)); wanem: $WANEM_DIR"
if [[ " $SECTIONS " == *" big "* ]]; then
    python3 "$UTIL" gen-file "$W/srv/big.bin" "$SIZE_MB"
    BIG_SUM=$(python3 "$UTIL" hash-file "$W/srv/big.bin")
    # Four quarters for the four-stream reference, each served by its own socat.
    mkdir -p "$W/srv/parts"
    split -n 4 -d -a 1 "$W/srv/big.bin" "$W/srv/parts/part"
fi
if [[ " $SECTIONS " == *" tree "* ]]; then
    python3 "$UTIL" gen-tree "$W/srv/tree" "$TREE_FILES" "$TREE_FILE_BYTES" "$TREE_PER_DIR"
    TREE_SUM=$(python3 "$UTIL" hash-tree "$W/srv/tree")
fi

private_sshd_files "$W/ssh" "$B_ADDR" 22
if [[ ! -d /run/sshd ]]; then # sshd's privilege separation directory
    mkdir -p /run/sshd
    MADE_RUN_SSHD=1
fi
"$SSHD" -t -f "$W/ssh/sshd_config" || die "sshd rejects the bench config"

FERRY_PORT=9001
SOCAT_PORT=7000 # one stream; 7001-7004 the four
ferry_() { to "${ON_A[@]}" "$FERRY" --server "$B_ADDR:$FERRY_PORT" --token="$FERRY_TOKEN" -q "$@"; }
# The same server over QUIC (UDP, the same port number); the pin is the
# host and port's, so the TLS run's pin serves it too.
ferry_quic_() { to "${ON_A[@]}" "$FERRY" --server "quic://$B_ADDR:$FERRY_PORT" --token="$FERRY_TOKEN" -q "$@"; }
scp_() { to "${ON_A[@]}" scp -F "$W/ssh/config" -q "$@"; }
ssh_() { to "${ON_A[@]}" ssh -F "$W/ssh/config" "$@"; }
rsync_() { to "${ON_A[@]}" rsync -a -e "ssh -F $W/ssh/config" "$@"; }

# --- the tools, as timed: each fetches into $W/dst ---------------------------

# A socat listener in the server's namespace, serving one connection;
# started (untimed) before each socat run.
socat_serve() {
    local port=$1 name=socat-$1
    shift
    spawn "$W/log/$name" "${ON_B[@]}" socat -d -d -b "$SOCAT_BUF" \
        -U "TCP-LISTEN:$port,bind=$B_ADDR,reuseaddr" "$@"
    wait_for_line "$W/log/$name.err" 'listening on' "${PIDS[-1]}"
}
socat_fetch() { to "${ON_A[@]}" socat -b "$SOCAT_BUF" -u "TCP:$B_ADDR:$1" "$2"; }

prep_big_socat() { socat_serve "$SOCAT_PORT" "OPEN:$W/srv/big.bin"; }
big_socat() {
    socat_fetch "$SOCAT_PORT" "CREATE:$W/dst/big.bin" && sync "$W/dst/big.bin"
}
prep_big_socat_x4() {
    local i
    for i in 0 1 2 3; do socat_serve $((SOCAT_PORT + 1 + i)) "OPEN:$W/srv/parts/part$i"; done
}
big_socat_x4() {
    local i pids=() rc=0
    for i in 0 1 2 3; do
        socat_fetch $((SOCAT_PORT + 1 + i)) "CREATE:$W/dst/part$i" &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || rc=1; done
    ((rc == 0)) && sync "$W"/dst/part?
}
big_ferry() { ferry_ get big.bin --to "$W/dst"; }
# The same get on one connection, and the file the other way (into up/,
# moved to dst/ by check_copy).
big_ferry_1() { ferry_ get --streams 1 big.bin --to "$W/dst"; }
big_ferry_quic() { ferry_quic_ get big.bin --to "$W/dst"; }
prep_big_ferry_put() { rm -rf "$W/srv/up"; }
big_ferry_put() { ferry_ put "$W/srv/big.bin" --to up; }
big_scp() { scp_ "bench:$W/srv/big.bin" "$W/dst/"; }
big_rsync() { rsync_ "bench:$W/srv/big.bin" "$W/dst/"; }

prep_tree_socat() { socat_serve "$SOCAT_PORT" SYSTEM:"tar -C $W/srv -cf - tree"; }
tree_socat() {
    # shellcheck disable=SC2016 # the inner bash expands them
    to "${ON_A[@]}" bash -o pipefail -c \
        'socat -b "$1" -u "TCP:$2" STDOUT | tar -C "$3" -xf -' _ "$SOCAT_BUF" "$B_ADDR:$SOCAT_PORT" "$W/dst"
}
tree_ferry() { ferry_ get -r tree --to "$W/dst"; }
tree_scp() { scp_ -r "bench:$W/srv/tree" "$W/dst/"; }
tree_rsync() { rsync_ "bench:$W/srv/tree" "$W/dst/"; }

exec_ferry() { ferry_ exec -- true; }
exec_ferry_quic() { ferry_quic_ exec -- true; }
exec_ssh() { ssh_ bench true; }

declare -A TOOLS=([big]="socat socat_x4 ferry ferry_1 ferry_put scp rsync" [tree]="socat ferry scp rsync" [exec]="ferry ssh")
QUIC_SERVE=()
if ((QUIC)); then
    TOOLS[big]="socat socat_x4 ferry ferry_1 ferry_quic ferry_put scp rsync"
    TOOLS[exec]="ferry ferry_quic ssh"
    QUIC_SERVE=(--quic "$B_ADDR:$FERRY_PORT")
fi

# Checks the first copy of each tool; a wrong one is reported and fails the run.
check_copy() {
    local label=$1 workload=$2 got want
    case $workload in
    big)
        if [[ -e $W/dst/part0 ]]; then cat "$W"/dst/part? >"$W/dst/big.bin"; fi
        if [[ -e $W/srv/up/big.bin ]]; then mv "$W/srv/up/big.bin" "$W/dst/big.bin"; fi
        want=$BIG_SUM
        got=$(python3 "$UTIL" hash-file "$W/dst/big.bin" 2>/dev/null || echo missing)
        ;;
    tree)
        want=$TREE_SUM
        got=$(python3 "$UTIL" hash-tree "$W/dst/tree" 2>/dev/null || echo missing)
        ;;
    *) return 0 ;;
    esac
    if [[ $got == "$want" ]]; then
        printf '%s\tverified\n' "$label" >>"$W/checks.tsv"
    else
        printf '%s\tWRONG\n' "$label" >>"$W/checks.tsv"
        say "   WRONG COPY by $label: got '$got', want '$want'"
    fi
}

# run_once PROFILE WORKLOAD TOOL ROUND: empties the destination, runs the
# tool's prep (untimed), times the tool, and records the seconds.
run_once() {
    local profile=$1 workload=$2 tool=$3 round=$4 t0 t1 rc=0
    rm -rf "$W/dst" && mkdir "$W/dst"
    if declare -F "prep_${workload}_$tool" >/dev/null; then "prep_${workload}_$tool"; fi
    t0=$(date +%s%N)
    step "${workload}_$tool" || rc=$?
    t1=$(date +%s%N)
    stop_servers # the socat listeners, done with their one connection
    ((rc == 0)) || die "$profile $workload ${tool//_/-}: run $round failed (exit $rc)"
    printf '%s\t%s\t%s\t%s\n' "$profile" "$workload" "${tool//_/-}" "$((t1 - t0))" >>"$W/times.tsv"
    ((round == 1)) && check_copy "$profile $workload ${tool//_/-}" "$workload"
    say "   $(printf '%-6s %-9s %8.3f s' "$workload" "${tool//_/-}" "$(((t1 - t0) / 1000))e-6")"
}

# --- each profile ---------------------------------------------------------------

for profile in $PROFILES; do
    IFS=: read -r rtt rate loss <<<"$profile"
    say "== $rtt ms RTT, $rate Mbit/s, $loss% loss"
    LINK_UP=1
    "$WANEM_DIR/wan.sh" up $((rtt / 2)) "$rate" "$loss" >&2 || die "wan.sh up failed"

    # The servers live in the server's namespace, for this profile only;
    # the state directory (certificate, token) is kept, so is the pin.
    spawn "$W/log/ferry" "${ON_B[@]}" "$FERRY" serve --allow-exec --no-udp-time \
        --listen "$B_ADDR:$FERRY_PORT" "${QUIC_SERVE[@]}" --root "$W/srv" --state "$W/state"
    wait_for_line "$W/log/ferry.out" '^ready' "${PIDS[-1]}"
    spawn "$W/log/sshd" "${ON_B[@]}" "$SSHD" -D -e -f "$W/ssh/sshd_config"
    wait_for_line "$W/log/sshd.err" 'Server listening' "${PIDS[-1]}"
    SERVER_PIDS=("${PIDS[@]}")
    PIDS=()
    FERRY_TOKEN=$(cat "$W/state/token")
    # Pins the certificate on first use, so no timed run pays for it.
    ferry_ exec -- echo ready >"$W/log/pin.out" 2>"$W/log/pin.err" ||
        die "ferry exec over the link failed: $(cat "$W/log/pin.err" "$W/log/ferry.err")"
    if ((QUIC)); then
        ferry_quic_ exec -- echo ready >"$W/log/pin-quic.out" 2>"$W/log/pin-quic.err" ||
            die "ferry exec over QUIC over the link failed: $(cat "$W/log/pin-quic.err" "$W/log/ferry.err")"
    fi
    ssh_ bench true || die "ssh over the link failed: $(tail -5 "$W/log/sshd.err")"

    for workload in $SECTIONS; do
        runs=$RUNS
        [[ $workload == exec ]] && runs=$EXEC_RUNS
        for ((round = 1; round <= runs; round++)); do
            say "-- $workload: round $round of $runs"
            for tool in ${TOOLS[$workload]}; do run_once "$profile" "$workload" "$tool" "$round"; done
        done
    done

    PIDS=("${SERVER_PIDS[@]}")
    SERVER_PIDS=()
    stop_servers
    link_down "$profile"
    say "   wanem: $(tr '\n' ' ' <"$W/log/wanem-$profile.txt")"
done

# --- report ---------------------------------------------------------------------

echo "ferry WAN bench: $(date -u +%FT%TZ), $(nproc) CPUs, $(uname -r), $(
    awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
echo "ferry $("$FERRY" --version | awk '{print $2}') at $FERRY (built $(date -u -r "$FERRY" +%FT%TZ));" \
    "repo HEAD $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(
        git -C "$REPO" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' (src has uncommitted changes)')"
echo "link: wanem ($WANEM_DIR), client in $WAN_A ($A_ADDR), servers in $WAN_B ($B_ADDR); TLS for ferry$(
    ((QUIC)) && echo ', and QUIC for ferry-quic')"
echo "big file $SIZE_MB MiB; tree $TREE_FILES x $TREE_FILE_BYTES B; $RUNS runs each ($EXEC_RUNS for exec); files on $(stat -f -c %T "$W")"
echo "load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg)" \
    "(other processes on these $(nproc) CPUs, and wanem's relay itself, make every number noisier)"
echo "$(ssh -V 2>&1); $(rsync --version | head -1 | awk '{print "rsync", $3}'); $(socat -V | awk '/socat version/ {print "socat", $3; exit}')"
for profile in $PROFILES; do
    echo "wanem $profile: $(grep -E 'passed|lost' "$W/log/wanem-$profile.txt" | tr '\n' ' ')"
done
set +e
python3 "$REPORT" "$W/times.tsv" "$W/checks.tsv" "SLACK_PCT=$SLACK_PCT" "SIZE_MB=$SIZE_MB"
exit $?
