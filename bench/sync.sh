#!/usr/bin/env bash
# bench/sync.sh: `ferry sync` against rsync over ssh and the rsync daemon, in
# one run (bench/sync_bench.py says what it measures and how).
#
# Usage: bench/sync.sh              (run as root: it starts a private sshd)
#
# Environment: SIZE_MB=1024 (the big file), RUNS=5, TREE_FILES=10000,
# SECTIONS="delta tree hashing", FERRY=target/release/ferry (built with cargo
# if missing), TMPFS=/dev/shm, SKIP_INSTALL=1 to not apt-get install rsync
# and openssh. Exit status: 0 all targets met, 1 a target missed, 2 the bench
# failed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
if [[ -z ${SKIP_INSTALL:-} ]]; then
    missing=()
    command -v rsync >/dev/null || missing+=(rsync)
    command -v sshd >/dev/null || [[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
    command -v ssh >/dev/null || missing+=(openssh-client)
    if ((${#missing[@]})); then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
    fi
fi
if [[ -z ${FERRY:-} ]]; then
    (cd "$REPO" && cargo build --release --locked -q)
    export FERRY="$REPO/target/release/ferry"
fi
exec timeout "${TOTAL_TIMEOUT:-3600}" python3 "$HERE/sync_bench.py"
