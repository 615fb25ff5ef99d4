#!/usr/bin/env python3
"""Helpers for bench/transfer.sh: test data, checksums, free ports, the report.

Only the standard library: the bench must run on a fresh Debian machine.
Hashing goes through hashlib (OpenSSL, SHA-NI where the CPU has it), which is
several times faster than coreutils' sha256sum on the machines this runs on.

    gen-file PATH MIB            random data, deterministic per PATH name
    gen-tree DIR FILES BYTES PER_DIR
    hash-file PATH               sha256 of the contents
    hash-tree DIR                "<count> <sha256 over sorted relative paths and contents>"
    free-port                    a currently unused TCP port on 127.0.0.1
    report TIMES_DIR CPU_DIR RESULTS_TSV CONFIG...   the tables, PASS/FAIL, exit status
"""

import hashlib
import os
import random
import socket
import statistics
import sys

MIB = 1 << 20


def gen_file(path, mib):
    rng = random.Random(os.path.basename(path))
    with open(path, "wb") as f:
        for _ in range(int(mib)):
            f.write(rng.randbytes(MIB))


def gen_tree(root, files, size, per_dir):
    files, size, per_dir = int(files), int(size), int(per_dir)
    rng = random.Random(root)
    for i in range(files):
        d = os.path.join(root, "d%04d" % (i // per_dir))
        if i % per_dir == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%05d.bin" % i), "wb") as f:
            f.write(rng.randbytes(size))


def hash_file(path):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(4 * MIB)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def hash_tree(root):
    """Every entry under root, files and anything else (a leftover partial
    file, a symlink) counted, so an incomplete or littered tree differs."""
    h = hashlib.sha256()
    count = 0
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            paths.append(os.path.relpath(os.path.join(dirpath, name), root))
    for rel in sorted(paths):
        full = os.path.join(root, rel)
        count += 1
        h.update(rel.encode() + b"\0")
        if os.path.islink(full) or not os.path.isfile(full):
            h.update(b"<not a regular file>")
            continue
        with open(full, "rb") as f:
            data = f.read()
        h.update(len(data).to_bytes(8, "little") + data)
    return "%d %s" % (count, h.hexdigest())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def report(times_dir, cpu_dir, results_tsv, *config):
    """config: KEY=VALUE pairs: LARGE_BYTES, TREE_FILES."""
    cfg = dict(c.split("=", 1) for c in config)
    large = int(cfg.get("LARGE_BYTES", "0"))
    tree_files = int(cfg.get("TREE_FILES", "0"))
    status = {}
    if os.path.exists(results_tsv):
        with open(results_tsv) as f:
            for line in f:
                label, verdict = line.rstrip("\n").split("\t", 1)
                status[label] = verdict
    med = {}
    cpu_total = {}
    rows = []
    for label in sorted_labels(times_dir):
        with open(os.path.join(times_dir, label)) as f:
            runs = [int(x) / 1e9 for x in f.read().split()]
        if not runs:
            continue
        m = statistics.median(runs)
        med[label] = m
        cpu = (None, None)
        cpu_file = os.path.join(cpu_dir, label)
        if os.path.exists(cpu_file):
            with open(cpu_file) as f:
                pairs = [tuple(int(x) / 1e9 for x in line.split()) for line in f if line.strip()]
            if pairs:
                cpu = (statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs))
        rows.append((label, runs, m, cpu))
        if cpu[0] is not None:
            cpu_total[label] = cpu[0] + cpu[1]

    print()
    print("== Timings: wall time of the whole client command, median of runs ==")
    print("(MiB/s = 2^20 bytes/s; f/s = files/s; cpu = median CPU seconds of the client side")
    print(" and of the server side (ferry serve, or sshd/rsyncd and what they ran))")
    print("%-26s %4s %9s %8s %8s %11s %6s %6s  %s"
          % ("what", "runs", "median s", "min s", "max s", "rate", "cpu-c", "cpu-s", "copy"))
    for label, runs, m, cpu in rows:
        if label.startswith("tree-"):
            rate = "%7.0f f/s" % (tree_files / m) if m > 0 else "-"
        else:
            rate = "%5.0f MiB/s" % (large / m / MIB) if m > 0 else "-"
        cc = "%6.2f" % cpu[0] if cpu[0] is not None else "     -"
        cs = "%6.2f" % cpu[1] if cpu[1] is not None else "     -"
        print("%-26s %4d %9.3f %8.3f %8.3f %11s %s %s  %s"
              % (label, len(runs), m, min(runs), max(runs), rate, cc, cs, status.get(label, "?")))

    def ok(label):
        return label in med and status.get(label) == "verified"

    # (description, kind, ferry label, other label, target); kind "speed"
    # compares throughput (ferry/other >= target), "time" compares time
    # (ferry/other <= target), "faster" requires ferry strictly faster.
    targets = [
        ("ferry plaintext put vs socat+fsync", "speed", "large-ferry-plain-put", "large-socat-fsync", 0.8),
        ("ferry plaintext get vs socat+fsync", "speed", "large-ferry-plain-get", "large-socat-fsync", 0.8),
        ("ferry TLS put vs scp (default cipher) up", "speed", "large-ferry-tls-put", "large-scp-put", 2.0),
        ("ferry TLS get vs scp (default cipher) down", "speed", "large-ferry-tls-get", "large-scp-get", 2.0),
        ("tree: ferry put -r time vs rsync -a up", "time", "tree-ferry-tls-put", "tree-rsync-ssh-put", 0.8),
        ("tree: ferry get -r time vs rsync -a down", "time", "tree-ferry-tls-get", "tree-rsync-ssh-get", 0.8),
        ("tree: ferry put -r time vs scp -r up", "faster", "tree-ferry-tls-put", "tree-scp-put", 1.0),
        ("tree: ferry get -r time vs scp -r down", "faster", "tree-ferry-tls-get", "tree-scp-get", 1.0),
    ]
    print()
    print("== Targets ==")
    print("%-44s %8s %-10s %-6s %s" % ("target", "ratio", "wanted", "result", "same ratio on CPU time"))
    failed = 0
    for desc, kind, ferry, other, want in targets:
        if ferry not in med or other not in med:
            continue
        # The same comparison on CPU seconds (both ends): not the target, but
        # far less sensitive to what else the machine runs.
        cpu_ratio = "-"
        if cpu_total.get(ferry) and cpu_total.get(other):
            r = cpu_total[other] / cpu_total[ferry] if kind == "speed" else cpu_total[ferry] / cpu_total[other]
            cpu_ratio = "%.2fx" % r
        if kind == "speed":
            ratio = med[other] / med[ferry]  # throughput ratio = inverse time ratio
            passed = ratio >= want
            wanted = ">= %.1fx" % want
        elif kind == "time":
            ratio = med[ferry] / med[other]
            passed = ratio <= want
            wanted = "<= %.1fx" % want
        else:
            ratio = med[ferry] / med[other]
            passed = ratio < want
            wanted = "< 1.0x"
        if not (ok(ferry) and ok(other)):
            verdict = "FAIL (a copy did not verify)"
            passed = False
        else:
            verdict = "PASS" if passed else "FAIL"
        failed += not passed
        print("%-44s %7.2fx %-10s %-6s %s" % (desc, ratio, wanted, verdict, cpu_ratio))
    print("(speed targets: ferry throughput / other's; time targets: ferry time / other's;")
    print(" the targets are judged on the wall-time ratio)")
    bad = [label for label in med if status.get(label) != "verified"]
    if bad:
        print("copies that did not verify: " + ", ".join(bad))
        return 2
    return 1 if failed else 0


ORDER = [
    "large-socat-fsync",
    "large-ferry-plain-put", "large-ferry-plain-get",
    "large-ferry-tls-put", "large-ferry-tls-get",
    "large-scp-put", "large-scp-get", "large-scp-aes128gcm-put", "large-scp-aes128gcm-get",
    "large-rsync-ssh-put", "large-rsyncd-put",
    "tree-ferry-tls-put", "tree-ferry-tls-get", "tree-ferry-plain-put", "tree-ferry-plain-get",
    "tree-rsync-ssh-put", "tree-rsync-ssh-get", "tree-scp-put", "tree-scp-get",
]


def sorted_labels(times_dir):
    labels = os.listdir(times_dir)
    return sorted(labels, key=lambda l: (ORDER.index(l) if l in ORDER else len(ORDER), l))


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "gen-file":
        gen_file(*args)
    elif cmd == "gen-tree":
        gen_tree(*args)
    elif cmd == "hash-file":
        print(hash_file(*args))
    elif cmd == "hash-tree":
        print(hash_tree(*args))
    elif cmd == "free-port":
        print(free_port())
    elif cmd == "report":
        return report(*args)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
