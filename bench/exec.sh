#!/usr/bin/env bash
# bench/exec.sh: `ferry exec` against ssh and against the socket tutorial's
# "ssh with a header" server, all on 127.0.0.1.
#
#   1. Latency of one command, each a new client process timed whole
#      (median of RUNS, default 50):
#        ferry --server ADDR exec -- true        a new TLS connection each time
#        ssh -p PORT 127.0.0.1 true              a new ssh connection each time
#        ssh ... -o ControlMaster=auto ... true  over a master opened beforehand
#      Targets: ferry <= 0.5 x plain ssh, and ferry <= 2 x ssh over the
#      ControlMaster.
#   2. Commands per second over one connection: COUNT (default 2000) `true`s
#      from stdin lines through one `ferry exec`, against the tutorial's
#      server (bench/tutorial_ssh_server.py) driven by its client loop, both
#      timed as whole client processes (median of RATE_RUNS, default 5, the
#      contenders taking turns). The tutorial server is measured twice: as
#      written (four small sends, so Nagle's algorithm meets delayed ACKs
#      and most replies stall ~40 ms; TUTORIAL_COUNT commands, default 100)
#      and with TCP_NODELAY (COUNT commands), which is the fair baseline. A
#      floor row spawns the same COUNT `sh -c true`s locally, with no network,
#      as the bench user: what running the commands alone costs.
#
# Every server runs as the non-root user BENCH_USER (default ferrybench,
# created with `useradd -m -s /bin/sh` if missing and left in place unless
# REMOVE_USER=1): a private sshd (its own config, host key and port in a
# temporary directory, UsePAM no, key login only) logs it in with a plain
# /bin/sh, and `ferry serve --allow-exec` and the tutorial servers run as it
# via setpriv. The clients run as the invoking user (root). The bench
# appends one marked line to BENCH_USER's ~/.ssh/authorized_keys and removes
# it on exit, together with every process it started (by PID) and its
# temporary directory.
#
# Usage: bench/exec.sh                      (as root: it adds a user and starts sshd)
#
# Environment:
#   FERRY=target/release/ferry   the binary (build it first: cargo build --release)
#   RUNS=50 WARMUP=3             latency runs per command (at least 30) and warm-ups
#   COUNT=2000 TUTORIAL_COUNT=100 RATE_RUNS=5   the commands-per-second section
#   TIMER=auto                   hyperfine if installed, else python; or force one
#   SKIP_INSTALL=1               do not apt-get install missing tools
#   NO_HYPERFINE=1               do not install (or use) hyperfine
#   BENCH_USER=ferrybench REMOVE_USER=0
#   CMD_TIMEOUT=600 TOTAL_TIMEOUT=1200   seconds for one step / the whole bench
#
# Exit status: 0 both latency targets met, 1 a target missed, 2 the bench
# itself failed.

# Functions run through traps: not unreachable.
# shellcheck disable=SC2317
set -euo pipefail

RUNS=${RUNS:-50}
WARMUP=${WARMUP:-3}
COUNT=${COUNT:-2000}
TUTORIAL_COUNT=${TUTORIAL_COUNT:-100}
RATE_RUNS=${RATE_RUNS:-5}
TIMER=${TIMER:-auto}
BENCH_USER=${BENCH_USER:-ferrybench}
REMOVE_USER=${REMOVE_USER:-0}
CMD_TIMEOUT=${CMD_TIMEOUT:-600}
TOTAL_TIMEOUT=${TOTAL_TIMEOUT:-1200}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

say() { printf '%s\n' "$*" >&2; }
die() {
    say "exec.sh: $*"
    exit 2
}

for v in RUNS WARMUP COUNT TUTORIAL_COUNT RATE_RUNS CMD_TIMEOUT TOTAL_TIMEOUT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number, not '${!v}'"
done
((RUNS >= 30)) || die "RUNS must be at least 30 (the issue asks for a median of 30 or more)"
((COUNT > 0 && RATE_RUNS > 0)) || die "COUNT and RATE_RUNS must be positive"
[[ $TIMER =~ ^(auto|hyperfine|python)$ ]] || die "TIMER must be auto, hyperfine or python"

# The whole run is bounded: re-run under timeout(1), which sends TERM first,
# so the EXIT trap below still cleans up.
if [[ -z ${_EXEC_BENCH_BOUNDED:-} ]]; then
    export _EXEC_BENCH_BOUNDED=1
    exec timeout --foreground -k 30 "$TOTAL_TIMEOUT" "$BASH" "$0" "$@"
fi

[[ $(id -u) == 0 ]] || die "run as root: it creates a user and starts a private sshd"

# --- tools ------------------------------------------------------------------

SSHD=/usr/sbin/sshd
packages=()
[[ -x $SSHD ]] || packages+=(openssh-server)
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || packages+=(openssh-client)
if [[ ${NO_HYPERFINE:-0} != 1 && $TIMER != python ]] && ! command -v hyperfine >/dev/null; then
    packages+=(hyperfine)
fi
if ((${#packages[@]})) && [[ ${SKIP_INSTALL:-0} != 1 ]]; then
    say "installing ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq >&2 || say "apt-get update failed; trying the install anyway"
    # hyperfine is optional: if it cannot be installed, the python timer is used.
    timeout 300 apt-get install -y -qq "${packages[@]}" >&2 ||
        say "apt-get install ${packages[*]} failed"
fi
[[ -x $SSHD ]] || die "no $SSHD (apt-get install openssh-server)"
command -v ssh >/dev/null || die "no ssh (apt-get install openssh-client)"
for tool in python3 setpriv useradd timeout; do
    command -v "$tool" >/dev/null || die "no $tool"
done
if [[ $TIMER == auto ]]; then
    if [[ ${NO_HYPERFINE:-0} != 1 ]] && command -v hyperfine >/dev/null; then TIMER=hyperfine; else TIMER=python; fi
fi
[[ $TIMER == python ]] || command -v hyperfine >/dev/null || die "TIMER=hyperfine but no hyperfine"

FERRY=${FERRY:-$REPO/target/release/ferry}
[[ -x $FERRY ]] || die "no ferry binary at $FERRY: run cargo build --release, or set FERRY"
FERRY=$(realpath "$FERRY")

# --- clean-up -----------------------------------------------------------------

work=
pids=()           # servers we started, killed by PID
cm_pid=           # the ssh ControlMaster
created_user=0
keys_file=
key_marker="ferry-exec-bench-$$"
saved_passwd=
made_run_sshd=0

cleanup() {
    local status=$?
    set +e
    [[ -n $step_pid ]] && kill "$step_pid" 2>/dev/null
    if [[ -n $work && -S $work/ssh/cm ]]; then
        ssh -F "$work/ssh/ssh_config" -o ControlPath="$work/ssh/cm" -O exit 127.0.0.1 2>/dev/null
    fi
    [[ -n $cm_pid ]] && kill "$cm_pid" 2>/dev/null
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
    if [[ -n $keys_file && -f $keys_file ]]; then
        # Rewrite in place, so the file keeps its owner and mode.
        grep -v -F "$key_marker" "$keys_file" >"$keys_file.bench-tmp"
        cat "$keys_file.bench-tmp" >"$keys_file"
        rm -f "$keys_file.bench-tmp"
    fi
    [[ -n $saved_passwd ]] && usermod -p "$saved_passwd" "$BENCH_USER"
    if [[ $REMOVE_USER == 1 && $created_user == 1 ]]; then
        userdel -r "$BENCH_USER" 2>/dev/null && say "removed user $BENCH_USER"
    fi
    [[ $made_run_sshd == 1 ]] && rmdir /run/sshd 2>/dev/null
    [[ -n $work ]] && rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the bench user -------------------------------------------------------------

if ! id -u "$BENCH_USER" >/dev/null 2>&1; then
    useradd -m -s /bin/sh "$BENCH_USER"
    created_user=1
    say "created user $BENCH_USER (left in place afterwards unless REMOVE_USER=1)"
fi
user_home=$(getent passwd "$BENCH_USER" | cut -d: -f6)
user_shell=$(getent passwd "$BENCH_USER" | cut -d: -f7)
[[ $(id -u "$BENCH_USER") != 0 ]] || die "BENCH_USER must not be root"
[[ -d $user_home ]] || die "$BENCH_USER has no home directory ($user_home)"
# Without PAM, sshd refuses an account whose password is locked ("!..."),
# which is how useradd leaves it; "*" is no password at all, but not locked.
shadow_pw=$(getent shadow "$BENCH_USER" | cut -d: -f2)
if [[ $shadow_pw == '!'* ]]; then
    [[ $created_user == 1 ]] || saved_passwd=$shadow_pw
    usermod -p '*' "$BENCH_USER"
fi

# --- the temporary directory ----------------------------------------------------

work=$(mktemp -d /tmp/ferry-execbench.XXXXXX)
chmod 755 "$work" # the bench user must reach its own subdirectory
mkdir -p "$work/bin" "$work/ssh" "$work/log" "$work/out" "$work/client-config" "$work/srv"
chmod 700 "$work/ssh"
chown "$BENCH_USER:" "$work/srv"
chmod 700 "$work/srv"
# Copies the bench user can surely read and run, wherever the repo lives.
install -m 755 "$FERRY" "$work/bin/ferry"
install -m 644 "$HERE/tutorial_ssh_server.py" "$HERE/exec_util.py" "$work/bin/"
ferry="$work/bin/ferry"
util="$HERE/exec_util.py"
as_user=(setpriv --reuid="$BENCH_USER" --regid="$BENCH_USER" --init-groups --reset-env)

# Runs one long step under CMD_TIMEOUT in the background and waits for it:
# bash runs a TERM trap only between commands, and `wait` is one it can
# interrupt, so the whole-run timeout still gets to clean up promptly.
step_pid=
step() {
    timeout "$CMD_TIMEOUT" "$@" &
    step_pid=$!
    wait "$step_pid"
    step_pid=
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits for a "listening ADDR" line in $1 from process $2; prints ADDR.
wait_listening() {
    local file=$1 pid=$2 addr
    for _ in $(seq 1 200); do
        addr=$(awk '/^listening/ {print $2; exit}' "$file" 2>/dev/null)
        if [[ -n $addr ]]; then
            printf '%s\n' "$addr"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# --- sshd -----------------------------------------------------------------------

ssh_port=$(free_port)
ssh-keygen -q -t ed25519 -N '' -C "ferry-exec-bench host" -f "$work/ssh/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C "$key_marker" -f "$work/ssh/id_ed25519"
install -d -m 700 -o "$BENCH_USER" -g "$(id -gn "$BENCH_USER")" "$user_home/.ssh"
keys_file=$user_home/.ssh/authorized_keys
if [[ ! -e $keys_file ]]; then
    install -m 600 -o "$BENCH_USER" -g "$(id -gn "$BENCH_USER")" /dev/null "$keys_file"
fi
cat "$work/ssh/id_ed25519.pub" >>"$keys_file"

cat >"$work/ssh/sshd_config" <<EOF
Port $ssh_port
ListenAddress 127.0.0.1
HostKey $work/ssh/host_ed25519
PidFile $work/ssh/sshd.pid
UsePAM no
StrictModes yes
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $BENCH_USER
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
LogLevel INFO
EOF
cat >"$work/ssh/ssh_config" <<EOF
User $BENCH_USER
IdentityFile $work/ssh/id_ed25519
IdentitiesOnly yes
UserKnownHostsFile $work/ssh/known_hosts
GlobalKnownHostsFile /dev/null
StrictHostKeyChecking accept-new
BatchMode yes
LogLevel ERROR
EOF
if [[ ! -d /run/sshd ]]; then # sshd's privilege separation directory
    mkdir -p /run/sshd
    made_run_sshd=1
fi
"$SSHD" -t -f "$work/ssh/sshd_config" || die "sshd refuses the config"
"$SSHD" -D -f "$work/ssh/sshd_config" -E "$work/log/sshd.log" &
pids+=($!)
ssh_up=0
for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$ssh_port") 2>/dev/null; then
        ssh_up=1
        break
    fi
    sleep 0.05
done
((ssh_up)) || die "sshd did not start: $(cat "$work/log/sshd.log")"

ssh_cmd=(ssh -F "$work/ssh/ssh_config" -p "$ssh_port")
cm_opts=(-o ControlMaster=auto -o ControlPath="$work/ssh/cm" -o ControlPersist=60)
who=$(timeout 30 "${ssh_cmd[@]}" 127.0.0.1 id -un) ||
    die "ssh login as $BENCH_USER failed: $(tail -5 "$work/log/sshd.log")"
[[ $(head -1 <<<"$who") == "$BENCH_USER" ]] || die "ssh logged in as '$who', not $BENCH_USER"
# The master, opened (and left running) before any timing.
timeout 30 "${ssh_cmd[@]}" "${cm_opts[@]}" 127.0.0.1 true
cm_check=$(timeout 10 "${ssh_cmd[@]}" -o ControlPath="$work/ssh/cm" -O check 127.0.0.1 2>&1) ||
    die "no ControlMaster: $cm_check"
cm_pid=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$cm_check")

# --- ferry serve ----------------------------------------------------------------

"${as_user[@]}" "$ferry" serve --allow-exec --no-udp-time --listen 127.0.0.1:0 \
    --root "$work/srv/root" --state "$work/srv/state/ferry" \
    >"$work/log/ferry.out" 2>"$work/log/ferry.err" &
pids+=($!)
ferry_addr=$(wait_listening "$work/log/ferry.out" "${pids[-1]}") ||
    die "ferry serve did not start: $(cat "$work/log/ferry.err")"

export XDG_STATE_HOME=$work/srv/state XDG_CONFIG_HOME=$work/client-config
unset FERRY_SERVER FERRY_TOKEN FERRY_FINGERPRINT FERRY_PLAINTEXT FERRY_STATE RUST_LOG
# Warm-up: pins the certificate, and checks whom commands run as.
ferry_who=$(timeout 30 "$ferry" --server "$ferry_addr" exec -- 'id -un' 2>"$work/log/pin.err") ||
    die "ferry exec failed: $(cat "$work/log/pin.err")"
[[ $ferry_who == "$BENCH_USER" ]] || die "ferry exec ran as '$ferry_who', not $BENCH_USER"
grep -q pinned "$work/log/pin.err" || die "the warm-up did not pin: $(cat "$work/log/pin.err")"

# --- the tutorial's servers --------------------------------------------------------

"${as_user[@]}" python3 "$work/bin/tutorial_ssh_server.py" server --listen 127.0.0.1:0 \
    >"$work/log/tutorial.out" 2>"$work/log/tutorial.err" &
pids+=($!)
tutorial_addr=$(wait_listening "$work/log/tutorial.out" "${pids[-1]}") ||
    die "the tutorial server did not start: $(cat "$work/log/tutorial.err")"
"${as_user[@]}" python3 "$work/bin/tutorial_ssh_server.py" server --listen 127.0.0.1:0 --nodelay \
    >"$work/log/tutorial-nodelay.out" 2>"$work/log/tutorial-nodelay.err" &
pids+=($!)
tutorial_nd_addr=$(wait_listening "$work/log/tutorial-nodelay.out" "${pids[-1]}") ||
    die "the tutorial server did not start: $(cat "$work/log/tutorial-nodelay.err")"

# --- 1. latency -------------------------------------------------------------------

ferry_line="$ferry --server $ferry_addr exec -- true"
ssh_line="${ssh_cmd[*]} 127.0.0.1 true"
cm_line="${ssh_cmd[*]} ${cm_opts[*]} 127.0.0.1 true"
# Not targets; they split ferry's time: process start alone, then start plus
# TCP, TLS, hello and one echo round trip (exec adds the command on top).
start_line="$ferry --version"
echo_line="$ferry --server $ferry_addr echo x"
say ""
say "ferry server $ferry_addr, sshd 127.0.0.1:$ssh_port, both as $BENCH_USER (login shell $user_shell)"
say "timing ($TIMER, $RUNS runs each after $WARMUP warm-ups):"
say "  ferry:             $ferry_line"
say "  ssh:               $ssh_line"
say "  ssh-controlmaster: $cm_line"
say "  ferry-start:       $start_line"
say "  ferry-echo:        $echo_line"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ $TIMER == hyperfine ]]; then
    step hyperfine -N --style basic --warmup "$WARMUP" --runs "$RUNS" \
        --export-json "$work/out/latency.json" \
        -n ferry "$ferry_line" -n ssh "$ssh_line" -n ssh-controlmaster "$cm_line" \
        -n ferry-start "$start_line" -n ferry-echo "$echo_line" >&2
else
    step python3 "$util" time --runs "$RUNS" --warmup "$WARMUP" \
        --out "$work/out/latency.json" \
        "ferry=$ferry_line" "ssh=$ssh_line" "ssh-controlmaster=$cm_line" \
        "ferry-start=$start_line" "ferry-echo=$echo_line"
fi

# --- 2. commands per second over one connection ------------------------------------------

# COUNT lines of `true`, one command per line (what `yes true | head -n COUNT` gives).
seq "$COUNT" | sed 's/.*/true/' >"$work/out/commands.txt"
rate_ferry="$ferry --server $ferry_addr exec <$work/out/commands.txt"
rate_nd="python3 $work/bin/tutorial_ssh_server.py client --server $tutorial_nd_addr -n $COUNT"
rate_tut="python3 $work/bin/tutorial_ssh_server.py client --server $tutorial_addr -n $TUTORIAL_COUNT"
rate_floor="${as_user[*]} python3 $work/bin/exec_util.py floor -n $COUNT"
say ""
say "commands per second (median of $RATE_RUNS whole client processes, taking turns):"
say "  ferry:            $rate_ferry"
say "  tutorial-nodelay: $rate_nd"
say "  floor:            $rate_floor"
say "  tutorial:         $rate_tut"
step python3 "$util" rate --runs "$RATE_RUNS" --count "$COUNT" \
    --out "$work/out/rate.json" "ferry=$rate_ferry" "tutorial-nodelay=$rate_nd" "floor=$rate_floor"
step python3 "$util" rate --runs "$RATE_RUNS" --count "$TUTORIAL_COUNT" \
    --out "$work/out/rate-tutorial.json" "tutorial=$rate_tut"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ---------------------------------------------------------------------------------

set +e
python3 "$util" report --latency "$work/out/latency.json" \
    --rate "$work/out/rate.json" --rate "$work/out/rate-tutorial.json" \
    --meta "timer=$TIMER" \
    --meta "ferry=$FERRY ($("$ferry" --version), built $(date -r "$FERRY" '+%F %T'); repo HEAD $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'))" \
    --meta "ssh=$(ssh -V 2>&1); servers (sshd sessions, ferry serve, tutorial) run as $BENCH_USER, clients as $(id -un)" \
    --meta "machine=$(nproc) CPUs, load average $load_before before, $load_after after"
status=$?
exit "$status"
