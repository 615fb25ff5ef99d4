#!/usr/bin/env python3
"""The socket tutorial's "simulated ssh with a header" server, and its client.

This is the baseline bench/exec.sh compares `ferry exec` with, so it stays
as close to the classic tutorial as it can while still being correct:

  server: a TCP server that serves one client at a time. For each
          recv(1024) it runs the bytes as a command with
          subprocess.Popen(cmd, shell=True, stdout=PIPE, stderr=PIPE),
          reads stdout then stderr to EOF, and sends
          struct.pack('i', len(header_bytes)), a JSON header
          {"filename": ..., "md5": ..., "total_size": N}, stdout, stderr
          -- four separate sends, as the tutorial does.
  client: sends N commands one after another and reads each reply fully
          (4-byte length, header, total_size bytes) before sending the next.

Two deliberate departures, both in the tutorial's favour or neutral:
  * sendall() instead of send(): send() may write only part of a buffer;
    with the empty output of `true` this changes nothing.
  * the md5 is the real md5 of the output (the tutorial puts a placeholder);
    it costs about a microsecond for empty output.
`--nodelay` sets TCP_NODELAY on the server's socket (the tutorial does not),
so the bench can show how much of the tutorial's time is Nagle's algorithm
holding back the small header sends.

Usage:
  tutorial_ssh_server.py server [--listen 127.0.0.1:0] [--nodelay]
      prints "listening HOST:PORT" on stdout once it accepts connections
  tutorial_ssh_server.py client --server HOST:PORT [-n 2000] [--command true]
      prints "commands N seconds S per_second R" on stdout
"""

import argparse
import hashlib
import json
import socket
import struct
import subprocess
import sys
import time


def parse_addr(text):
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def serve(listen, nodelay):
    phone = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    phone.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    phone.bind(parse_addr(listen))
    phone.listen(5)
    host, port = phone.getsockname()
    print(f"listening {host}:{port}", flush=True)
    while True:  # one client at a time, as in the tutorial
        conn, _client_addr = phone.accept()
        if nodelay:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            try:
                cmd = conn.recv(1024)
                if not cmd:
                    break
                res = subprocess.Popen(
                    cmd.decode("utf-8"),
                    shell=True,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                stdout = res.stdout.read()
                stderr = res.stderr.read()
                header_dic = {
                    "filename": "cmd_result",
                    "md5": hashlib.md5(stdout + stderr).hexdigest(),
                    "total_size": len(stdout) + len(stderr),
                }
                header_bytes = json.dumps(header_dic).encode("utf-8")
                conn.sendall(struct.pack("i", len(header_bytes)))
                conn.sendall(header_bytes)
                conn.sendall(stdout)
                conn.sendall(stderr)
            except ConnectionResetError:
                break
        conn.close()


def recv_exactly(sock, n):
    chunks = []
    while n:
        chunk = sock.recv(min(n, 65536))
        if not chunk:
            raise ConnectionError("the server closed the connection mid-reply")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def client(server, count, command):
    start = time.perf_counter()
    sock = socket.create_connection(parse_addr(server))
    cmd = command.encode("utf-8")
    for _ in range(count):
        sock.sendall(cmd)
        (header_len,) = struct.unpack("i", recv_exactly(sock, 4))
        header = json.loads(recv_exactly(sock, header_len))
        body = recv_exactly(sock, header["total_size"])
        if hashlib.md5(body).hexdigest() != header["md5"]:
            raise ValueError("md5 mismatch")
    sock.close()
    seconds = time.perf_counter() - start
    print(f"commands {count} seconds {seconds:.6f} per_second {count / seconds:.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("--listen", default="127.0.0.1:0")
    s.add_argument("--nodelay", action="store_true")
    c = sub.add_parser("client")
    c.add_argument("--server", required=True)
    c.add_argument("-n", type=int, default=2000)
    c.add_argument("--command", default="true")
    args = parser.parse_args()
    if args.mode == "server":
        try:
            serve(args.listen, args.nodelay)
        except KeyboardInterrupt:
            pass
    else:
        client(args.server, args.n, args.command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
