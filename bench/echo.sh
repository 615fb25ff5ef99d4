#!/bin/sh
# Runs ferry's echo benchmark (bench/cargo/echo/) in a release build.
#
# What it measures, all on 127.0.0.1:
#   - round trips per second of a 64-byte echo, one request in flight per
#     connection, at 1 and at 64 connections, for three servers started as
#     separate processes: a raw TCP ping-pong server (the baseline: it reads
#     exactly 64 bytes and writes them back), `ferry serve --plaintext`, and
#     `ferry serve` with TLS. Targets: plaintext >= 0.8x raw, TLS >= 0.6x raw.
#   - the server's resident memory per authenticated idle connection, with
#     10,000 of them open, for plaintext and TLS. Target: under 32 KiB.
#
# It prints a table with a PASS or FAIL per target and exits 0 either way:
# it is a measurement, not a test. Arguments go to the benchmark, e.g.
#   bench/echo.sh --duration 10          # 10 s per configuration
#   bench/echo.sh --idle-connections 0   # skip the memory section
#   bench/echo.sh --help
set -eu
cd "$(dirname "$0")/.."
exec cargo bench --bench echo -- "$@"
