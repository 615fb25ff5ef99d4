#!/bin/sh
# Runs ferry's datagram benchmark (bench/cargo/udp.rs) in a release build:
# requests per second of `ferry serve --udp-echo` and `--udp-time` with 16
# concurrent senders, against a raw UDP echo server measured in the same
# run, on 127.0.0.1. Target: >= 0.7x the raw rate. Prints a PASS or FAIL
# per target and exits 0 either way: a measurement, not a test.
#   bench/udp.sh --duration 10 --senders 32
set -eu
cd "$(dirname "$0")/.."
exec cargo bench --bench udp -- "$@"
