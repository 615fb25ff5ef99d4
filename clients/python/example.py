"""Talks to a ferry server with ferry_client.py: echo, ls, put, get, exec.

    python3 example.py HOST:PORT TOKEN FINGERPRINT
    python3 example.py 127.0.0.1:9001 "$(cat ~/.local/state/ferry/token)" SHA256:...

Pass `plaintext` instead of a fingerprint for a `ferry --plaintext serve`.
"""

import os
import sys
import tempfile

from ferry_client import Client, FerryError


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    host, port = sys.argv[1].rsplit(":", 1)
    token, pin = sys.argv[2], sys.argv[3]
    plaintext = pin == "plaintext"
    with Client.connect(host, int(port), token=token, fingerprint=None if plaintext else pin,
                        plaintext=plaintext) as ferry:
        print("server:", ferry.welcome["server"], "offers", ", ".join(ferry.welcome["services"]))
        print("echo:", ferry.echo(b"hello ferry", upper=True).decode())
        for entry in ferry.ls(""):
            print("ls: %-6s %10d %s" % (entry["kind"], entry["size"], entry["path"]))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "example.txt")
            with open(path, "w") as f:
                f.write("written by example.py\n")
            try:
                print("put:", ferry.put(path, "example"))
            except FerryError as err:
                print("put refused:", err)
            else:
                size = ferry.get("example/example.txt", os.path.join(tmp, "back.txt"))
                print("get: %d bytes back" % size)
        try:
            result = ferry.exec("uname -a; echo this goes to stderr >&2")
            print("exec stdout:", result.stdout.decode(), end="")
            print("exec stderr:", result.stderr.decode(), end="")
            print("exec status:", result.exit_status)
        except FerryError as err:
            print("exec refused:", err)


if __name__ == "__main__":
    main()
