#!/usr/bin/env bash
# Many clients at once against one server, on 127.0.0.1 only.
#
# CLIENTS (default 100) processes each `ferry put` a distinct file of SIZE_MB
# (default 10) MiB at the same moment, then each `ferry get`s it back; every
# file is checked with sha256sum on both trips. Prints the wall time of each
# phase, the aggregate rate, how many clients failed, and the server's peak
# resident memory (VmHWM). Over TLS unless PLAINTEXT=1.
#
#   bench/clients.sh                  # 100 clients x 10 MiB, TLS
#   CLIENTS=20 SIZE_MB=50 bench/clients.sh
#   FERRY=target/release/ferry bench/clients.sh   # skip the build
set -euo pipefail
cd "$(dirname "$0")/.."

clients=${CLIENTS:-100}
size_mb=${SIZE_MB:-10}
if [ -z "${FERRY:-}" ]; then
    cargo build --release --quiet
    FERRY=target/release/ferry
fi
FERRY=$(realpath "$FERRY")

work=$(mktemp -d /dev/shm/ferry-clients.XXXXXX 2>/dev/null || mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

export XDG_STATE_HOME=$work/state XDG_CONFIG_HOME=$work/config
unset FERRY_SERVER FERRY_TOKEN FERRY_FINGERPRINT FERRY_PLAINTEXT
mode=()
if [ "${PLAINTEXT:-0}" = 1 ]; then mode=(--plaintext); fi
mkdir -p "$work/src" "$work/root" "$work/back"

echo "making $clients files of $size_mb MiB in $work"
for i in $(seq 1 "$clients"); do
    head -c $((size_mb * 1024 * 1024)) /dev/urandom >"$work/src/f$i"
done
(cd "$work/src" && sha256sum f*) >"$work/sums"

"$FERRY" "${mode[@]}" serve --no-udp-time --listen 127.0.0.1:0 --root "$work/root" \
    --max-connections $((clients + 50)) >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 1 100); do
    grep -q '^listening' "$work/server.out" 2>/dev/null && break
    sleep 0.05
done
addr=$(awk '/^listening/ {print $2; exit}' "$work/server.out")
[ -n "$addr" ] || { echo "the server did not start"; cat "$work/server.err"; exit 1; }
# Pin the certificate once, so the clients do not race to write known_hosts.
"$FERRY" "${mode[@]}" -q --server "$addr" ls >/dev/null

now() { date +%s.%N; }
run_phase() { # name, then the per-client command with {} for the index
    local name=$1 cmd=$2 failed=0 start end pids=()
    start=$(now)
    for i in $(seq 1 "$clients"); do
        bash -c "${cmd//\{\}/$i}" >/dev/null 2>"$work/$name.$i.err" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
    end=$(now)
    python3 - "$name" "$start" "$end" "$clients" "$size_mb" "$failed" <<'PY'
import sys
name, start, end, clients, size_mb, failed = sys.argv[1:]
secs = float(end) - float(start)
total = int(clients) * int(size_mb)
print(f"{name:>4}: {clients} clients x {size_mb} MiB in {secs:.2f} s "
      f"= {total / secs:.0f} MiB/s aggregate; {failed} failed")
PY
}

f=$FERRY
m="${mode[*]}"
run_phase put "'$f' $m -q --server '$addr' put '$work/src/f{}'"
(cd "$work/root" && sha256sum -c --quiet "$work/sums") && echo " put: all $clients files verified"
run_phase get "'$f' $m -q --server '$addr' get f{} --to '$work/back'"
(cd "$work/back" && sha256sum -c --quiet "$work/sums") && echo " get: all $clients files verified"

echo "server peak resident memory: $(awk '/VmHWM/ {print $2, $3}' /proc/$server_pid/status)"
leftover=$(find "$work/root" "$work/back" -name '.ferry-partial-*' | wc -l)
echo "partial files left behind: $leftover"
