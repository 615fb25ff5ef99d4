#!/usr/bin/env python3
"""bench/sync_bench.py: `ferry sync` against rsync over ssh and the rsync
daemon, in one run, on 127.0.0.1 with every file on tmpfs (run through
bench/sync.sh, which says what it needs).

1. delta: a SIZE_MB file (default 1024) with 100 bytes inserted at 1 MiB and
   4 KiB overwritten at 600 MiB (the issue's case, scaled when SIZE_MB is
   smaller). Bytes the tool reports sending for the change and wall time:
   - cold: the receiver's copy was just written (ferry's index knows
     nothing of it, so ferry cuts it first, as rsync reads it);
   - warm: the destination alternates between the two versions, so ferry's
     index on both ends knows every file (rsync has no memory to warm).
2. tree: TREE_FILES files of 4 KiB (default 10,000, 100 per directory),
   re-synced with nothing changed, and with 10 files changed.
3. hashing: `ferry sync -c -n` of the big file onto an identical copy: both
   ends cut and hash it (the sender, then the receiver), against `cat` of the
   file twice, the read speed of the tmpfs.

Each timed command runs RUNS times (default 5) in rounds that run every tool
once; the report gives medians. Every destination is compared with its
source after the last run. Exit status 0 if every copy is exact and every
target is met, 1 if a target is missed, 2 if the bench failed.
"""

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MIB = 1024 * 1024

SIZE_MB = int(os.environ.get("SIZE_MB", "1024"))
RUNS = int(os.environ.get("RUNS", "5"))
TREE_FILES = int(os.environ.get("TREE_FILES", "10000"))
FERRY = os.environ.get("FERRY", os.path.join(REPO, "target/release/ferry"))
CMD_TIMEOUT = int(os.environ.get("CMD_TIMEOUT", "600"))


def say(*args):
    print(*args, file=sys.stderr, flush=True)


def die(message):
    say(f"sync_bench: {message}")
    sys.exit(2)


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bench:
    def __init__(self, work):
        self.work = work
        self.procs = []
        self.results = {}
        self.misses = []

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def spawn(self, name, argv, env=None, ready=None):
        log = open(self.path("log", name + ".err"), "wb")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, env=env)
        self.procs.append(proc)
        if ready is None:
            return proc, []
        lines = []
        deadline = time.time() + 30
        while time.time() < deadline:
            line = proc.stdout.readline().decode()
            if not line:
                die(f"{name} exited: {open(self.path('log', name + '.err')).read()}")
            lines.append(line.strip())
            if ready(line):
                return proc, lines
        die(f"{name} did not start")

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def run(self, argv, env=None):
        """Runs a command to its end; returns (seconds, stdout)."""
        started = time.perf_counter()
        done = subprocess.run(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=CMD_TIMEOUT
        )
        took = time.perf_counter() - started
        if done.returncode != 0:
            die(f"{argv} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
        return took, done.stdout.decode()

    def setup(self):
        for d in ["log", "srv", "state", "client-state", "xdg", "ssh", "rsyncd", "data"]:
            os.makedirs(self.path(d), exist_ok=True)
        # ferry: a TLS server on a free port, its token for the client.
        _, lines = self.spawn(
            "ferry",
            [FERRY, "serve", "--root", self.path("srv"), "--state", self.path("state"),
             "--listen", "127.0.0.1:0", "--no-udp-time"],
            ready=lambda line: line.strip() == "ready",
        )
        self.ferry_addr = next(
            l.split()[1] for l in lines if l.startswith("listening") and "(TLS)" in l
        )
        self.ferry_env = dict(
            os.environ,
            FERRY_TOKEN_FILE=self.path("state", "token"),
            FERRY_STATE=self.path("client-state"),
            XDG_CONFIG_HOME=self.path("xdg"),
        )
        # A private sshd, as transfer.sh runs it.
        port = free_port()
        subprocess.run(
            ["bash", "-c", f'. "{HERE}/private_sshd.sh"; private_sshd_files "$1" 127.0.0.1 {port}',
             "-", self.path("ssh")],
            check=True,
        )
        os.makedirs("/run/sshd", exist_ok=True)
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        proc = subprocess.Popen(
            [sshd, "-D", "-e", "-f", self.path("ssh", "sshd_config")],
            stderr=subprocess.PIPE,
        )
        self.procs.append(proc)
        deadline = time.time() + 20
        while time.time() < deadline:
            line = proc.stderr.readline().decode()
            if "Server listening" in line:
                break
            if not line:
                die("sshd did not start")
        self.ssh = f"ssh -F {self.path('ssh', 'config')}"
        # The rsync daemon, on a module over its own directory.
        rport = free_port()
        with open(self.path("rsyncd", "rsyncd.conf"), "w") as conf:
            conf.write(
                f"use chroot = no\nlog file = {self.path('log', 'rsyncd.log')}\n"
                f"[bench]\n    path = {self.path('rsyncd')}\n    read only = no\n    uid = root\n    gid = root\n"
            )
        proc = subprocess.Popen(
            ["rsync", "--daemon", "--no-detach", f"--config={self.path('rsyncd', 'rsyncd.conf')}",
             "--address=127.0.0.1", f"--port={rport}"],
            stderr=open(self.path("log", "rsyncd.err"), "wb"),
        )
        self.procs.append(proc)
        self.rsyncd = f"rsync://127.0.0.1:{rport}/bench"
        self.run(["ssh", "-F", self.path("ssh", "config"), "bench", "true"])
        deadline = time.time() + 10
        while time.time() < deadline:
            if subprocess.run(["rsync", f"{self.rsyncd}/"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)

    # The three tools, each syncing the contents of SRC into a destination
    # named NAME on its own server.
    def ferry_sync(self, src, name, extra=()):
        took, out = self.run(
            [FERRY, "sync", "--json", *extra, src + "/", f"{self.ferry_addr}:{name}"],
            env=self.ferry_env,
        )
        summary = next(json.loads(l) for l in out.splitlines() if '"summary"' in l)
        return took, summary

    def rsync_ssh(self, src, name, extra=()):
        took, out = self.run(
            ["rsync", "-a", "--stats", *extra, "-e", self.ssh, src + "/",
             f"bench:{self.path('srv', 'rsync-' + name)}/"]
        )
        return took, rsync_sent(out)

    def rsync_daemon(self, src, name, extra=()):
        took, out = self.run(["rsync", "-a", "--stats", *extra, src + "/", f"{self.rsyncd}/{name}/"])
        return took, rsync_sent(out)

    def destinations(self, name):
        return {
            "ferry": self.path("srv", name),
            "rsync over ssh": self.path("srv", "rsync-" + name),
            "rsync daemon": self.path("rsyncd", name),
        }

    def tools(self):
        return [("ferry", self.ferry_sync), ("rsync over ssh", self.rsync_ssh),
                ("rsync daemon", self.rsync_daemon)]


def rsync_sent(out):
    """What rsync --stats says crossed: bytes sent plus received."""
    sent = re.search(r"Total bytes sent: ([\d,]+)", out)
    received = re.search(r"Total bytes received: ([\d,]+)", out)
    if not sent or not received:
        return None
    return int(sent.group(1).replace(",", "")) + int(received.group(1).replace(",", ""))


def write_random(path, size, seed):
    """SIZE pseudo-random bytes from SEED, fast (os.urandom is as fast and
    not repeatable; repeatability does not matter here)."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MIB)
            f.write(os.urandom(n))
            left -= n


def edited_copy(old, new):
    """NEW is OLD with 100 bytes inserted at 1 MiB and 4 KiB overwritten at
    600/1024 of the way (600 MiB of 1 GiB)."""
    size = os.path.getsize(old)
    at = size * 600 // 1024
    with open(old, "rb") as src, open(new, "wb") as dst:
        dst.write(src.read(MIB))
        dst.write(os.urandom(100))
        pos = MIB
        while pos < size:
            n = min(8 * MIB, size - pos)
            chunk = bytearray(src.read(n))
            lo, hi = max(at, pos), min(at + 4096, pos + n)
            if lo < hi:
                chunk[lo - pos:hi - pos] = os.urandom(hi - lo)
            dst.write(chunk)
            pos += n
    shutil.copystat(old, new)
    os.utime(new, (time.time(), time.time() + 10))


def same_file(a, b):
    return subprocess.run(["cmp", "-s", a, b]).returncode == 0


def section_delta(b):
    say(f"delta: a {SIZE_MB} MiB file, 100 bytes inserted, 4 KiB overwritten")
    v1 = b.path("data", "v1")
    v2 = b.path("data", "v2")
    os.makedirs(v1)
    os.makedirs(v2)
    write_random(os.path.join(v1, "big"), SIZE_MB * MIB, 1)
    edited_copy(os.path.join(v1, "big"), os.path.join(v2, "big"))
    figures = {}
    for tool, sync in b.tools():
        figures[tool] = {"cold": [], "warm": [], "cold_bytes": None, "warm_bytes": None}
    for tool, sync in b.tools():
        sync(v1, "delta")
    # Cold: the receiver's copy freshly written each run.
    for run in range(RUNS):
        for tool, sync in b.tools():
            dest = os.path.join(b.destinations("delta")[tool], "big")
            shutil.copy2(os.path.join(v1, "big"), dest + ".tmp")
            os.replace(dest + ".tmp", dest)
            took, sent = sync(v2, "delta")
            figures[tool]["cold"].append(took)
            figures[tool]["cold_bytes"] = sent
            assert_same(b, os.path.join(v2, "big"), dest, tool)
    # Warm: alternate the two versions; every file is known to ferry's index.
    for run in range(RUNS):
        for tool, sync in b.tools():
            src = v1 if run % 2 == 0 else v2
            took, sent = sync(src, "delta")
            figures[tool]["warm"].append(took)
            figures[tool]["warm_bytes"] = sent
            dest = os.path.join(b.destinations("delta")[tool], "big")
            assert_same(b, os.path.join(src, "big"), dest, tool)
    b.results["delta"] = figures
    return v1


def ferry_bytes(summary):
    return summary["delta_bytes"] + summary["bytes"] if isinstance(summary, dict) else summary


def section_tree(b):
    say(f"tree: {TREE_FILES} files of 4 KiB, 100 per directory")
    src = b.path("data", "tree")
    for k in range(TREE_FILES):
        d = os.path.join(src, f"d{k // 100:03}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{k:05}"), "wb") as f:
            f.write(os.urandom(4096))
    for tool, sync in b.tools():
        sync(src, "tree")
    figures = {tool: {"unchanged": [], "ten_changed": []} for tool, _ in b.tools()}
    for run in range(RUNS):
        for tool, sync in b.tools():
            took, _ = sync(src, "tree")
            figures[tool]["unchanged"].append(took)
    for run in range(RUNS):
        for k in range(10):
            path = os.path.join(src, f"d{k:03}", f"f{k * 100 + run:05}")
            with open(path, "r+b") as f:
                f.write(os.urandom(16))
            os.utime(path, (time.time(), time.time() + 100 + run))
        for tool, sync in b.tools():
            took, _ = sync(src, "tree")
            figures[tool]["ten_changed"].append(took)
    for tool, dest in b.destinations("tree").items():
        diff = subprocess.run(["diff", "-r", "-q", src, dest], capture_output=True)
        if diff.returncode != 0:
            die(f"{tool}: the tree differs: {diff.stdout.decode()[:500]}")
    b.results["tree"] = figures


def section_hashing(b, v1):
    say("hashing: ferry sync -c -n onto an identical copy, against cat of the file twice")
    dest = b.path("srv", "hash")
    os.makedirs(dest)
    shutil.copy2(os.path.join(v1, "big"), os.path.join(dest, "big"))
    ferry, cat = [], []
    for run in range(RUNS):
        # A fresh client index each run, so the sender hashes too.
        shutil.rmtree(b.path("client-state", "sync"), ignore_errors=True)
        shutil.rmtree(b.path("state", "sync"), ignore_errors=True)
        took, summary = b.ferry_sync(v1, "hash", ["-c", "-n"])
        if summary["files"] != 0:
            die(f"ferry -c -n saw a difference in identical files: {summary}")
        ferry.append(took)
        took, _ = b.run(["bash", "-c", 'cat "$1" >/dev/null; cat "$1" >/dev/null', "-",
                         os.path.join(v1, "big")])
        cat.append(took)
    b.results["hashing"] = {"ferry": ferry, "cat": cat}


def assert_same(b, want, got, tool):
    if not same_file(want, got):
        die(f"{tool}: {got} is not {want}")


def report(b):
    med = statistics.median
    lines = []
    if "delta" in b.results:
        lines.append(f"## delta: {SIZE_MB} MiB file, 100 bytes inserted at 1 MiB, 4 KiB overwritten")
        lines.append("")
        lines.append("| tool | cold s | bytes | warm s | bytes |")
        lines.append("|---|---|---|---|---|")
        for tool, f in b.results["delta"].items():
            lines.append(
                f"| {tool} | {med(f['cold']):.2f} | {ferry_bytes(f['cold_bytes']):,} | "
                f"{med(f['warm']):.2f} | {ferry_bytes(f['warm_bytes']):,} |"
            )
        lines.append("")
        lines.append("Each run, in order (s):")
        lines.append("")
        for tool, f in b.results["delta"].items():
            runs = lambda xs: " ".join(f"{x:.2f}" for x in xs)
            lines.append(f"- {tool}: cold {runs(f['cold'])}; warm {runs(f['warm'])}")
        ferry = b.results["delta"]["ferry"]
        best_rsync = min(med(b.results["delta"][t]["cold"]) for t in ["rsync over ssh", "rsync daemon"])
        check(b, ferry_bytes(ferry["cold_bytes"]) < 1_000_000 * SIZE_MB / 1024,
              f"delta under 1 MB per GiB: {ferry_bytes(ferry['cold_bytes']):,} bytes")
        check(b, med(ferry["cold"]) < best_rsync,
              f"cold delta faster than rsync: {med(ferry['cold']):.2f} s vs {best_rsync:.2f} s")
        lines.append("")
    if "tree" in b.results:
        lines.append(f"## tree: {TREE_FILES} files of 4 KiB, re-synced")
        lines.append("")
        lines.append("| tool | nothing changed ms | 10 files changed ms |")
        lines.append("|---|---|---|")
        for tool, f in b.results["tree"].items():
            lines.append(f"| {tool} | {med(f['unchanged']) * 1000:.0f} | {med(f['ten_changed']) * 1000:.0f} |")
        ferry = b.results["tree"]["ferry"]
        check(b, med(ferry["unchanged"]) < 0.100,
              f"unchanged re-sync under 100 ms: {med(ferry['unchanged']) * 1000:.0f} ms")
        check(b, med(ferry["ten_changed"]) < 0.150,
              f"10 changed under 150 ms: {med(ferry['ten_changed']) * 1000:.0f} ms")
        lines.append("")
    if "hashing" in b.results:
        h = b.results["hashing"]
        gib = 2 * SIZE_MB / 1024
        lines.append("## hashing: both ends cut and hash the file (-c -n), against cat twice")
        lines.append("")
        lines.append(f"ferry {med(h['ferry']):.2f} s ({gib / med(h['ferry']):.2f} GiB/s), "
                     f"cat {med(h['cat']):.2f} s ({gib / med(h['cat']):.2f} GiB/s)")
        lines.append("")
    print("\n".join(lines))


def check(b, ok, what):
    say(("met:    " if ok else "MISSED: ") + what)
    if not ok:
        b.misses.append(what)


def main():
    for tool in ["rsync", "ssh", "ssh-keygen", "cmp", "diff"]:
        if not shutil.which(tool):
            die(f"{tool} is missing (bench/sync.sh installs it)")
    if not os.path.exists(FERRY):
        die(f"no ferry at {FERRY}; cargo build --release")
    base = os.environ.get("TMPFS", "/dev/shm")
    work = tempfile.mkdtemp(prefix="ferry-sync-bench-", dir=base)
    b = Bench(work)
    try:
        b.setup()
        sections = os.environ.get("SECTIONS", "delta tree hashing").split()
        v1 = None
        if "delta" in sections or "hashing" in sections:
            v1 = section_delta(b) if "delta" in sections else None
        if "tree" in sections:
            section_tree(b)
        if "hashing" in sections:
            if v1 is None:
                v1 = b.path("data", "v1")
                os.makedirs(v1)
                write_random(os.path.join(v1, "big"), SIZE_MB * MIB, 1)
            section_hashing(b, v1)
        report(b)
    finally:
        b.stop()
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if b.misses else 0)


if __name__ == "__main__":
    main()
