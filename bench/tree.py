#!/usr/bin/env python3
"""bench/tree.py: trees that are deep or have large manifests.

1. A chain of DEPTH directories (default 1,900) with a one-byte file in
   each: `ferry put -r`, `get -r` and `rm -r` against a plaintext server on
   127.0.0.1, each timed whole RUNS times (default 3), beside the local
   floor for the same work in the same run (`tar c | tar x` for a copy,
   `rm -rf` for a removal). Targets: each ferry command's median under 2 s,
   and the server's peak resident memory (VmHWM) under 64 MiB.
2. The memory a put manifest costs the server: a client written here sends
   a manifest of MANIFEST_MB MiB (default 16) of empty files in
   directories of 1,000, then their data; the server's peak resident memory
   grows by at most twice the manifest's size.

Everything runs on tmpfs (/dev/shm) when there is room, else in /tmp.

Usage: bench/tree.py            (FERRY=... to pick the binary; DEPTH, RUNS,
                                 MANIFEST_MB to change the sizes)
Exit status: 0 all targets met, 1 a target missed, 2 the bench failed.
"""

import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPTH = int(os.environ.get("DEPTH", "1900"))
RUNS = int(os.environ.get("RUNS", "3"))
MANIFEST_MB = float(os.environ.get("MANIFEST_MB", "16"))
TIMEOUT = 300


def ferry_binary():
    path = os.environ.get("FERRY") or os.path.join(REPO, "target/release/ferry")
    if not os.path.exists(path):
        print(f"building {path}", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True,
                       timeout=3600)
    return path


class Server:
    """`ferry serve --plaintext` on a free loopback port, in `home`."""

    def __init__(self, ferry, home):
        self.root = os.path.join(home, "root")
        self.state = os.path.join(home, "state")
        os.makedirs(self.root, exist_ok=True)
        self.proc = subprocess.Popen(
            [ferry, "serve", "--plaintext", "--listen", "127.0.0.1:0", "--no-udp-time",
             "--root", self.root, "--state", self.state],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in self.proc.stdout:
            if line.startswith("listening "):
                self.addr = line.split()[1]
                break
        else:
            raise RuntimeError("the server did not start")
        with open(os.path.join(self.state, "token")) as f:
            self.token = f.read().strip()

    def peak_rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def timed(cmd, env=None, cwd=None):
    started = time.monotonic()
    done = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=TIMEOUT)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {done.stderr[-400:]!r}")
    return took


def deep_tree(top, depth):
    os.makedirs(top)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
                f.write(b"x")
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def remove_tree(path):
    subprocess.run(["rm", "-rf", path], check=True, timeout=TIMEOUT)


def bench_deep(ferry, work):
    src = os.path.join(work, "src")
    deep_tree(os.path.join(src, "t"), DEPTH)
    server = Server(ferry, os.path.join(work, "server"))
    env = dict(os.environ, FERRY_SERVER=server.addr, FERRY_STATE=server.state,
               XDG_CONFIG_HOME=os.path.join(work, "config"))
    client = [ferry, "-q", "--plaintext"]
    dl = os.path.join(work, "dl")
    floor_dst = os.path.join(work, "floor")
    times = {k: [] for k in ("put", "get", "rm", "copy floor", "rm floor")}
    try:
        for _ in range(RUNS):
            remove_tree(os.path.join(server.root, "t"))
            times["put"].append(timed(client + ["put", "-r", os.path.join(src, "t")], env=env))
            remove_tree(dl)
            times["get"].append(timed(client + ["get", "-r", "t", "--to", dl], env=env))
            times["rm"].append(timed(client + ["rm", "-r", "t"], env=env))
            remove_tree(floor_dst)
            os.makedirs(floor_dst)
            times["copy floor"].append(timed(
                ["sh", "-c", f'tar -C "{src}" -cf - t | tar -C "{floor_dst}" -xf -']))
            times["rm floor"].append(timed(["rm", "-rf", os.path.join(floor_dst, "t")]))
        peak = server.peak_rss()
    finally:
        server.stop()
    return {k: statistics.median(v) for k, v in times.items()}, peak


def frame(header, body=b""):
    if body:
        header = dict(header, size=len(body))
    raw = json.dumps(header).encode()
    return struct.pack("<I", len(raw)) + raw + body


def read_frame(sock):
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise RuntimeError("the server closed the connection")
            data += chunk
        return data
    header = json.loads(exactly(struct.unpack("<I", exactly(4))[0]))
    return header, exactly(header.get("size", 0))


def bench_manifest(ferry, work):
    server = Server(ferry, os.path.join(work, "manifest-server"))
    try:
        before = server.peak_rss()
        host, port = server.addr.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
        sock.sendall(frame({"cmd": "hello", "version": 1, "token": server.token}))
        assert read_frame(sock)[0]["ok"]
        lines, size, files = [], 0, 0
        while size < MANIFEST_MB * 1024 * 1024:
            if files % 1000 == 0:
                line = json.dumps({"kind": "dir", "path": f"dir{files // 1000:04d}", "mode": 0o755,
                                   "mtime": 1_700_000_000}) + "\n"
                lines.append(line)
                size += len(line)
            line = json.dumps({"kind": "file", "path": f"dir{files // 1000:04d}/file-{files:08d}.dat",
                               "file_size": 0, "mode": 0o644, "mtime": 1_700_000_000,
                               "mtime_ns": 0}) + "\n"
            lines.append(line)
            size += len(line)
            files += 1
        manifest = "".join(lines).encode()
        sock.sendall(frame({"cmd": "put", "path": "m", "preserve": True}, manifest))
        header, wants = read_frame(sock)
        assert header["ok"], header
        # BLAKE3 of nothing: each file's data is empty.
        empty = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        data = []
        for want in wants.decode().splitlines():
            want = json.loads(want)
            if want["action"] == "send":
                data.append(frame({"file": want["i"], "offset": 0}))
                data.append(frame({"file_end": want["i"], "blake3": empty}))
        data.append(frame({"end": True}))
        sock.sendall(b"".join(data))
        header, _ = read_frame(sock)
        assert header["ok"] and header["files"] == files and header["failed"] == 0, header
        sock.close()
        return len(manifest), files, server.peak_rss() - before
    finally:
        server.stop()


def main():
    ferry = ferry_binary()
    base = "/dev/shm" if shutil.disk_usage("/dev/shm").free > 1 << 30 else None
    work = tempfile.mkdtemp(prefix="ferry-tree-bench-", dir=base)
    missed = []
    try:
        medians, peak = bench_deep(ferry, work)
        print(f"# a chain of {DEPTH} directories, a file in each; median of {RUNS} runs")
        print(f"{'command':<12} {'seconds':>8} {'vs floor':>9}")
        for name, floor in (("put", "copy floor"), ("get", "copy floor"), ("rm", "rm floor")):
            ratio = medians[name] / medians[floor]
            print(f"ferry {name:<6} {medians[name]:>8.3f} {ratio:>8.1f}x")
            if medians[name] >= 2.0:
                missed.append(f"{name} took {medians[name]:.2f} s (target: under 2 s)")
        for name in ("copy floor", "rm floor"):
            print(f"{name:<12} {medians[name]:>8.3f}")
        print(f"server peak RSS {peak / 2**20:.1f} MiB (target: under 64 MiB)")
        if peak >= 64 << 20:
            missed.append(f"server peak RSS {peak / 2**20:.1f} MiB")
        size, files, grew = bench_manifest(ferry, work)
        ratio = grew / size
        print(f"# a put manifest of {size / 2**20:.1f} MiB ({files} files)")
        print(f"server peak RSS grew {grew / 2**20:.1f} MiB: {ratio:.2f}x the manifest (target: 2x)")
        if ratio > 2.0:
            missed.append(f"the manifest cost {ratio:.2f}x its size")
    finally:
        # shutil.rmtree recurses once per level, past Python's limit.
        subprocess.run(["rm", "-rf", work], timeout=TIMEOUT)
    for miss in missed:
        print(f"MISSED: {miss}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as err:  # a bench that failed says so and exits 2
        print(f"tree.py: {err}", file=sys.stderr)
        sys.exit(2)
