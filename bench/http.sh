#!/usr/bin/env bash
# bench/http.sh: download throughput of ferry's HTTP door against dufs and
# miniserve serving the same file, in one run.
#
# One file of SIZE_MB MiB (default 1024) on tmpfs, served on 127.0.0.1 over
# plain HTTP by `ferry serve --plaintext --http`, `dufs` and `miniserve`;
# curl downloads it to /dev/null RUNS times (default 3) from each, in
# rounds that run each server once, so load from elsewhere falls on all of
# them alike. The report gives the median throughput; the target is ferry
# at least as fast as the faster of the other two. dufs and miniserve are
# installed with `cargo install --locked` into target/bench-tools (once).
#
# Usage: bench/http.sh [SIZE_MB]
#
# Environment:
#   SIZE_MB=1024   file size in MiB
#   RUNS=3         downloads per server
#   FERRY=...      the binary [default: target/release/ferry, built if missing]
#   TMPFS=/dev/shm where the file lives
#
# Exit status: 0 the target is met, 1 it is missed, 2 the bench failed (a
# download came back wrong, a server did not start).
set -euo pipefail

SIZE_MB=${1:-${SIZE_MB:-1024}}
RUNS=${RUNS:-3}
TMPFS=${TMPFS:-/dev/shm}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
TOOLS="$REPO/target/bench-tools"

say() { printf '%s\n' "$*" >&2; }
die() { say "http.sh: $*"; exit 2; }

[[ $SIZE_MB =~ ^[0-9]+$ && $SIZE_MB -gt 0 ]] || die "SIZE_MB must be a positive number of MiB"
[[ $RUNS =~ ^[0-9]+$ && $RUNS -gt 0 ]] || die "RUNS must be a positive number"
command -v curl >/dev/null || die "curl is needed (apt install curl)"

FERRY=${FERRY:-$REPO/target/release/ferry}
if [[ ! -x $FERRY ]]; then
    say "building ferry (release)"
    cargo build --release --manifest-path "$REPO/Cargo.toml" >&2
fi
for tool in dufs miniserve; do
    if [[ ! -x $TOOLS/bin/$tool ]]; then
        say "installing $tool into $TOOLS"
        cargo install --locked --quiet --root "$TOOLS" "$tool" >&2
    fi
done

WORK=$(mktemp -d "$TMPFS/ferry-http-bench.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/share" "$WORK/state"
head -c "$((SIZE_MB * 1024 * 1024))" /dev/urandom >"$WORK/share/big.bin"
WANT=$(sha256sum <"$WORK/share/big.bin" | cut -d' ' -f1)

# A free port for the servers that take one (ferry says which it bound).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ferry: its `listening ADDR (HTTP)` line names the port.
"$FERRY" serve --plaintext --listen 127.0.0.1:0 --no-udp-time --http 127.0.0.1:0 \
    --root "$WORK/share" --state "$WORK/state" >"$WORK/ferry.out" 2>"$WORK/ferry.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q '^ready$' "$WORK/ferry.out" 2>/dev/null && break; sleep 0.1; done
FERRY_ADDR=$(sed -n 's/^listening \(.*\) (HTTP)$/\1/p' "$WORK/ferry.out")
[[ -n $FERRY_ADDR ]] || die "ferry did not start: $(cat "$WORK/ferry.err")"
TOKEN=$(cat "$WORK/state/token")

DUFS_PORT=$(free_port)
"$TOOLS/bin/dufs" --bind 127.0.0.1 --port "$DUFS_PORT" "$WORK/share" >/dev/null 2>&1 &
PIDS+=($!)
MINISERVE_PORT=$(free_port)
"$TOOLS/bin/miniserve" --interfaces 127.0.0.1 --port "$MINISERVE_PORT" "$WORK/share" \
    >/dev/null 2>&1 &
PIDS+=($!)

declare -A URL HEADER
URL[ferry]="http://$FERRY_ADDR/files/big.bin"
HEADER[ferry]="Authorization: Bearer $TOKEN"
URL[dufs]="http://127.0.0.1:$DUFS_PORT/big.bin"
HEADER[dufs]="X-Bench: 1"
URL[miniserve]="http://127.0.0.1:$MINISERVE_PORT/big.bin"
HEADER[miniserve]="X-Bench: 1"
SERVERS=(ferry dufs miniserve)

for server in "${SERVERS[@]}"; do
    ok=0
    for _ in $(seq 100); do
        if curl -sf -o /dev/null -r 0-0 -H "${HEADER[$server]}" "${URL[$server]}"; then ok=1; break; fi
        sleep 0.1
    done
    [[ $ok == 1 ]] || die "$server did not answer at ${URL[$server]}"
    got=$(curl -sf -H "${HEADER[$server]}" "${URL[$server]}" | sha256sum | cut -d' ' -f1)
    [[ $got == "$WANT" ]] || die "$server sent other bytes than the file"
done

declare -A SPEEDS
for _ in $(seq "$RUNS"); do
    for server in "${SERVERS[@]}"; do
        speed=$(curl -sf -o /dev/null -w '%{speed_download}' -H "${HEADER[$server]}" "${URL[$server]}")
        SPEEDS[$server]+="$speed "
    done
done

median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-10s %12s   (%s MiB, %s runs, curl to /dev/null, 127.0.0.1, plain HTTP)\n' \
    server 'MiB/s' "$SIZE_MB" "$RUNS"
declare -A MEDIAN
for server in "${SERVERS[@]}"; do
    MEDIAN[$server]=$(echo "${SPEEDS[$server]}" | median)
    awk -v s="$server" -v b="${MEDIAN[$server]}" 'BEGIN {printf "%-10s %12.0f\n", s, b/1048576}'
done
faster=$(awk -v d="${MEDIAN[dufs]}" -v m="${MEDIAN[miniserve]}" 'BEGIN {print (d > m ? d : m)}')
if awk -v f="${MEDIAN[ferry]}" -v o="$faster" 'BEGIN {exit !(f >= o)}'; then
    echo "PASS ferry is at least as fast as the faster of dufs and miniserve"
else
    echo "FAIL ferry is slower than the faster of dufs and miniserve"
    exit 1
fi
