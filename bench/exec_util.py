#!/usr/bin/env python3
"""Helpers for bench/exec.sh: a process timer and the report.

  exec_util.py time --runs 50 --warmup 3 --out times.json NAME=CMD ...
      Times each CMD (a shell-words string, run without a shell, stdin from
      /dev/null, output discarded) as a whole process with
      time.perf_counter() around os.posix_spawn() and waitpid(). The
      commands take turns (round robin), so a slow patch of a busy machine
      hits all of them alike. Any non-zero exit, or a run over --timeout
      (reported once it ends; the caller's timeout(1) bounds a hung one),
      aborts. Writes hyperfine's JSON shape
      ({"results": [{"command", "times", "median", ...}]}), so the report
      reads either.

  exec_util.py rate --runs 3 --count N --out rate.json NAME=SHELLCMD ...
      Runs each SHELLCMD (through bash -c, so pipelines work) RUNS times,
      round robin, timing the whole pipeline, and records N / seconds.

  exec_util.py floor -n N [--command true]
      Spawns COMMAND N times locally, one after another, as the tutorial
      server does (Popen with shell=True, stdout and stderr piped and read
      to their end), and waits for each: the cost of the commands alone,
      with no network and no protocol -- the floor for both servers.

  exec_util.py report --latency lat.json [--rate rate.json ...] [--meta k=v ...]
      Prints the table, PASS/FAIL for the two latency targets, and exits 0
      if both are met, 1 otherwise.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time


def named(pairs):
    out = []
    for pair in pairs:
        name, sep, cmd = pair.partition("=")
        if not sep or not name:
            sys.exit(f"exec_util.py: expected NAME=COMMAND, got {pair!r}")
        out.append((name, cmd))
    return out


def summarize(name, cmd, times):
    return {
        "command": name,
        "command_line": cmd,
        "times": times,
        "mean": statistics.fmean(times),
        "stddev": statistics.stdev(times) if len(times) > 1 else 0.0,
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
    }


def run_once(argv, timeout, errfile):
    """Runs argv once and returns its wall time. os.posix_spawn and waitpid,
    with stdin and stdout on /dev/null and stderr in a file, time within
    ~0.05 ms of hyperfine; subprocess.run with a stderr pipe added ~1.8 ms
    a process here, which would flatter the slower commands' ratios."""
    errfile.seek(0)
    errfile.truncate()
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_DUP2, errfile.fileno(), 2),
    ]
    start = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        errfile.seek(0)
        sys.exit(
            f"exec_util.py: {shlex.join(argv)} exited {code}: "
            f"{errfile.read().decode(errors='replace').strip()}"
        )
    if elapsed > timeout:
        sys.exit(f"exec_util.py: {shlex.join(argv)} took {elapsed:.1f} s, over {timeout} s")
    return elapsed


def cmd_time(args):
    commands = [(name, cmd, shlex.split(cmd)) for name, cmd in named(args.commands)]
    errfile = tempfile.TemporaryFile()
    for _ in range(args.warmup):
        for _name, _cmd, argv in commands:
            run_once(argv, args.timeout, errfile)
    times = {name: [] for name, _, _ in commands}
    for _ in range(args.runs):
        for name, _cmd, argv in commands:
            times[name].append(run_once(argv, args.timeout, errfile))
    results = [summarize(name, cmd, times[name]) for name, cmd, _ in commands]
    with open(args.out, "w") as f:
        json.dump({"timer": "python", "results": results}, f, indent=1)


def cmd_rate(args):
    commands = named(args.commands)
    rates = {name: [] for name, _ in commands}
    for _ in range(args.runs):
        for name, cmd in commands:  # round robin, as in `time`
            start = time.perf_counter()
            proc = subprocess.run(
                ["bash", "-o", "pipefail", "-c", cmd],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                timeout=args.timeout,
            )
            elapsed = time.perf_counter() - start
            if proc.returncode != 0:
                sys.exit(
                    f"exec_util.py: `{cmd}` exited {proc.returncode}: "
                    f"{proc.stderr.decode(errors='replace').strip()}"
                )
            rates[name].append(args.count / elapsed)
    results = [
        {
            "command": name,
            "command_line": cmd,
            "count": args.count,
            "per_second": rates[name],
            "median": statistics.median(rates[name]),
        }
        for name, cmd in commands
    ]
    with open(args.out, "w") as f:
        json.dump({"results": results}, f, indent=1)


def cmd_floor(args):
    """The tutorial server's work without the network: spawn and drain."""
    for _ in range(args.n):
        res = subprocess.Popen(
            args.command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        res.stdout.read()
        res.stderr.read()
        res.wait()


def load(path):
    with open(path) as f:
        return {r["command"]: r for r in json.load(f)["results"]}


def cmd_report(args):
    lat = load(args.latency)
    ms = {name: r["median"] * 1000 for name, r in lat.items()}
    n = {name: len(r["times"]) for name, r in lat.items()}
    ferry, ssh, cm = ms["ferry"], ms["ssh"], ms["ssh-controlmaster"]
    out = []
    out.append("")
    out.append("== ferry exec vs ssh: one `true`, each a new process (median of runs) ==")
    out.append(f"{'command':<44} {'runs':>5} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    labels = {
        "ferry": "ferry exec -- true   (new TLS connection)",
        "ssh": "ssh 127.0.0.1 true   (new connection)",
        "ssh-controlmaster": "ssh 127.0.0.1 true   (over ControlMaster)",
    }
    for name in ["ferry", "ssh", "ssh-controlmaster"]:
        r = lat[name]
        out.append(
            f"{labels[name]:<44} {n[name]:>5} {ms[name]:>10.2f} "
            f"{r['min'] * 1000:>8.2f} {r['max'] * 1000:>8.2f}"
        )
    if "ferry-start" in lat and "ferry-echo" in lat:
        start, echo = ms["ferry-start"], ms["ferry-echo"]
        out.append(
            f"{'  of which: ferry --version (process start)':<44} {n['ferry-start']:>5} "
            f"{start:>10.2f}"
        )
        out.append(
            f"{'  ferry echo x (+ TCP, TLS, hello, 1 RTT)':<44} {n['ferry-echo']:>5} "
            f"{echo:>10.2f}   (+{echo - start:.2f})"
        )
        out.append(
            f"{'  ferry exec -- true (+ spawn, sh, exit)':<44} {'':>5} "
            f"{ferry:>10.2f}   (+{ferry - echo:.2f})"
        )
    out.append("")
    ok1 = ferry <= 0.5 * ssh
    ok2 = ferry <= 2.0 * cm
    out.append(
        f"target ferry <= 0.5 x ssh (new conn):      ferry/ssh = {ferry / ssh:.3f}   "
        f"{'PASS' if ok1 else 'FAIL'}"
    )
    out.append(
        f"target ferry <= 2 x ssh over ControlMaster: ferry/cm  = {ferry / cm:.3f}   "
        f"{'PASS' if ok2 else 'FAIL'}"
    )
    if args.rate:
        rate = {}
        for path in args.rate:
            rate.update(load(path))
        out.append("")
        first = rate["ferry"]
        out.append(
            f"== commands per second over one connection: {first['count']} x `true`, "
            f"whole client process (median of {len(first['per_second'])}) =="
        )
        labels = {
            "ferry": "ferry exec (stdin lines, one TLS conn)",
            "tutorial-nodelay": "tutorial server + TCP_NODELAY",
            "tutorial": "tutorial server as written",
            "floor": "floor: local spawn loop, no network",
        }
        out.append(f"{'':<44} {'commands/s':>10} {'ms/command':>11}")
        for name, r in rate.items():
            label = labels.get(name, name)
            extra = f"  (n={r['count']})" if r["count"] != first["count"] else ""
            out.append(
                f"{label:<44} {r['median']:>10.1f} {1000 / r['median']:>11.3f}{extra}"
            )
        f = rate["ferry"]["median"]
        for name in ["tutorial-nodelay", "tutorial"]:
            if name in rate:
                out.append(
                    f"ratio ferry / {labels[name]:<30} {f / rate[name]['median']:>8.2f} x"
                )
    for meta in args.meta or []:
        if not out[-1].startswith("  "):
            out.append("")
        k, _, v = meta.partition("=")
        out.append(f"  {k}: {v}")
    print("\n".join(out))
    return 0 if ok1 and ok2 else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("time")
    t.add_argument("--runs", type=int, default=50)
    t.add_argument("--warmup", type=int, default=3)
    t.add_argument("--timeout", type=float, default=30)
    t.add_argument("--out", required=True)
    t.add_argument("commands", nargs="+")
    r = sub.add_parser("rate")
    r.add_argument("--runs", type=int, default=3)
    r.add_argument("--count", type=int, required=True)
    r.add_argument("--timeout", type=float, default=300)
    r.add_argument("--out", required=True)
    r.add_argument("commands", nargs="+")
    fl = sub.add_parser("floor")
    fl.add_argument("-n", type=int, default=2000)
    fl.add_argument("--command", default="true")
    p = sub.add_parser("report")
    p.add_argument("--latency", required=True)
    p.add_argument("--rate", action="append")
    p.add_argument("--meta", action="append")
    args = parser.parse_args()
    if args.mode == "time":
        return cmd_time(args)
    if args.mode == "rate":
        return cmd_rate(args)
    if args.mode == "floor":
        return cmd_floor(args)
    return cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
