#!/usr/bin/env bash
# bench/quic.sh: a large `ferry get` over QUIC against TLS over TCP, on
# loopback, in one run.
#
# One server listens for both (--listen and --quic on 127.0.0.1); a file of
# SIZE_MB MiB of random bytes on tmpfs is fetched RUNS times over each, in
# rounds that run each transport once, so load from elsewhere falls on both
# alike. Each run is timed whole (start-up, handshake, transfer, fsync,
# exit); the report gives the median wall time of each and QUIC's speed as
# a fraction of TLS's. The target (issue 15) is at least 0.5x on loopback,
# where QUIC's user-space packet handling costs most against the kernel's
# TCP.
#
# Usage: bench/quic.sh [SIZE_MB]
#
# Environment:
#   SIZE_MB=1024   file size in MiB
#   RUNS=3         timed runs per transport
#   FERRY=...      the binary [default: target/release/ferry of this repo,
#                  built with cargo if missing]
#   TMPFS=/dev/shm where the files live
#
# Exit status: 0 the target met, 1 it was missed, 2 a copy was wrong or the
# bench failed.
set -euo pipefail

SIZE_MB=${1:-${SIZE_MB:-1024}}
RUNS=${RUNS:-3}
TMPFS=${TMPFS:-/dev/shm}
HERE=$(cd "$(dirname "$0")/.." && pwd)
FERRY=${FERRY:-$HERE/target/release/ferry}
if [[ ! -x $FERRY ]]; then
    (cd "$HERE" && cargo build --release)
fi

W=$(mktemp -d -p "$TMPFS" ferry-quic-bench.XXXXXX)
SERVER=
cleanup() {
    if [[ -n $SERVER ]]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
    rm -rf "$W"
}
trap cleanup EXIT

mkdir -p "$W/share"
head -c "$((SIZE_MB * 1024 * 1024))" /dev/urandom > "$W/share/big.bin"
want=$(sha256sum < "$W/share/big.bin")
export XDG_STATE_HOME=$W/state XDG_CONFIG_HOME=$W/config
"$FERRY" serve --listen 127.0.0.1:0 --quic 127.0.0.1:0 --root "$W/share" --no-udp-time \
    > "$W/serve.out" 2> "$W/serve.err" &
SERVER=$!
for _ in $(seq 100); do grep -q '^ready' "$W/serve.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^ready' "$W/serve.out" || { echo "the server did not start" >&2; cat "$W/serve.err" >&2; exit 2; }
tls=$(awk '$3 == "(TLS)" { print $2; exit }' "$W/serve.out")
quic=$(awk '$3 == "(QUIC)" { print $2; exit }' "$W/serve.out")
fp=$(awk '$1 == "fingerprint" { print $2 }' "$W/serve.out")

# One timed get over $1 (a --server value); prints its wall seconds.
get_once() {
    rm -rf "$W/got"
    local start end
    start=$(date +%s.%N)
    "$FERRY" --quiet --server "$1" --fingerprint "$fp" get big.bin --to "$W/got" \
        || { echo "the get from $1 failed" >&2; exit 2; }
    end=$(date +%s.%N)
    if [[ -z ${checked[$1]:-} ]]; then
        [[ $(sha256sum < "$W/got/big.bin") == "$want" ]] || { echo "the copy from $1 differs" >&2; exit 2; }
        checked[$1]=1
    fi
    echo "$end - $start" | bc -l
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

declare -A checked
tls_times=() quic_times=()
for _ in $(seq "$RUNS"); do
    tls_times+=("$(get_once "$tls")")
    quic_times+=("$(get_once "quic://$quic")")
done
tls_median=$(printf '%s\n' "${tls_times[@]}" | median)
quic_median=$(printf '%s\n' "${quic_times[@]}" | median)
ratio=$(echo "$tls_median / $quic_median" | bc -l)
printf 'get of %d MiB on loopback, median of %d runs\n' "$SIZE_MB" "$RUNS"
printf '  TLS over TCP  %6.2f s  %7.1f MiB/s   (runs: %s)\n' "$tls_median" \
    "$(echo "$SIZE_MB / $tls_median" | bc -l)" "${tls_times[*]}"
printf '  QUIC          %6.2f s  %7.1f MiB/s   (runs: %s)\n' "$quic_median" \
    "$(echo "$SIZE_MB / $quic_median" | bc -l)" "${quic_times[*]}"
printf '  QUIC / TLS    %6.2fx   (target: at least 0.50x)\n' "$ratio"
if (( $(echo "$ratio >= 0.5" | bc -l) )); then exit 0; else exit 1; fi
