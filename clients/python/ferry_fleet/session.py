"""One engine's connection to one ferry server: commands through `exec`,
files through `put` and `get`, with the failures an engine must tell
apart sorted into two exceptions.

`Unreachable` means no session could be had: the address, the pin, the
token. `RequestFailed` means one request failed on a working server (a
refused path, a damaged transfer, a command that wrote more than the cap);
the connection is dropped after any failure, since a stream cut short
leaves it mid-frame, and the next request connects again.

ferry's file service is confined to the served root, so a remote path
beneath the root (relative paths start at the host's remote-dir, else the
root) goes through `put`/`get`: BLAKE3-verified, written to a partial file
and renamed into place, mode kept. Any other path, and any transfer that
runs as another user (sudo), goes through `exec` with a small sh script
that does the same with the target's own tools: the bytes go to a
`mktemp` file beside the destination, its SHA-256 must match before `mv`
renames it into place, and a download is checked against a SHA-256 taken
on the target. Every remote name is quoted for sh, never spliced in raw.
"""

import hashlib
import math
import os
import posixpath
import shlex
import tempfile

from ferry_client import (MAX_EXEC_OUTPUT_BYTES, Client, ExecResult, FerryError,
                          _create_partial, _names_file, _published_mode)

from .target import TargetError

#: Seconds a file request may wait on one read or write: the server gives
#: up on a request after 30 s without progress, so twice that means a
#: server that is gone.
FILE_IO_TIMEOUT_SECS = 60
#: Seconds a command's connection may stay silent past the command's own
#: timeout, for the server to kill it and send its end frame.
TIMEOUT_GRACE_SECS = 10
#: Exit status of the fallback scripts when the bytes did not arrive
#: intact (EX_DATAERR).
DAMAGED_STATUS = 65
#: Marks the SHA-256 line a fallback download writes to stderr.
SUM_MARK = "ferry-fleet-sha256 "


class Unreachable(Exception):
    """The server could not be reached, or would not let us in."""


class RequestFailed(Exception):
    """One request failed on a server that was reached."""


def _quote(path):
    return shlex.quote(path)


def write_script(dest, sha256_hex, mode):
    """sh that writes its stdin to `dest`, atomically and verified."""
    return (
        'd=%(dest)s\n'
        't=$(mktemp "$(dirname -- "$d")/.ferry-fleet-XXXXXXXXXX") || exit 73\n'
        "trap 'rm -f \"$t\"' EXIT HUP INT TERM\n"
        'cat > "$t" || exit 74\n'
        's=$( (sha256sum || shasum -a 256) < "$t" 2>/dev/null) || '
        '{ echo "ferry-fleet: neither sha256sum nor shasum is on the target to check the '
        'file" >&2; exit 69; }\n'
        '[ "${s%%%% *}" = %(sum)s ] || { echo "ferry-fleet: the file arrived damaged; nothing '
        'was written" >&2; exit %(damaged)d; }\n'
        'chmod %(mode)o "$t" && mv -f "$t" "$d" || exit 73\n'
        'trap - EXIT HUP INT TERM\n'
    ) % {"dest": _quote(dest), "sum": sha256_hex, "mode": mode, "damaged": DAMAGED_STATUS}


def read_script(src):
    """sh that writes the file `src` to stdout and its SHA-256 to stderr."""
    return (
        'f=%(src)s\n'
        '[ -f "$f" ] || { echo "ferry-fleet: not a regular file" >&2; exit 66; }\n'
        'cat -- "$f" || exit 66\n'
        's=$( (sha256sum || shasum -a 256) < "$f" 2>/dev/null) || '
        '{ echo "ferry-fleet: neither sha256sum nor shasum is on the target to check the '
        'file" >&2; exit 69; }\n'
        'printf "\\n%(mark)s%%s\\n" "${s%%%% *}" >&2\n'
    ) % {"src": _quote(src), "mark": SUM_MARK}


class Session:
    """A lazily (re)connected client of one Target."""

    def __init__(self, target, connect_timeout=10.0, max_output_bytes=MAX_EXEC_OUTPUT_BYTES):
        self.target = target
        self.connect_timeout = connect_timeout
        self.max_output_bytes = max_output_bytes
        self._client = None
        self._root = None

    # -- the connection -------------------------------------------------

    def connect(self):
        if self._client is not None:
            return self._client
        where = self.target.address()
        try:
            token = self.target.token()
        except TargetError as err:
            raise Unreachable(str(err))
        try:
            client = Client.connect(self.target.host, self.target.port, token=token,
                                    fingerprint=self.target.fingerprint,
                                    timeout=self.connect_timeout)
        except FerryError as err:
            raise Unreachable("ferry at %s refused us: %s" % (where, err))
        except OSError as err:
            raise Unreachable("cannot reach ferry at %s: %s" % (where, err))
        self._client = client
        return client

    def close(self):
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def _failed(self, what, err):
        """Drops the connection (it may be mid-stream) and says what failed."""
        self.close()
        if isinstance(err, FerryError):
            return RequestFailed("%s: ferry at %s: %s" % (what, self.target.address(), err))
        return RequestFailed("%s: the connection to ferry at %s broke: %s"
                             % (what, self.target.address(), err))

    # -- commands -------------------------------------------------------

    def run(self, command, stdin=b"", timeout=None, env=None, become=None):
        """Runs `command` with `sh -c` in the host's remote-dir (else the
        root) and returns ferry_client's ExecResult. `timeout` (seconds)
        is the server's to enforce; `become` answers a password prompt
        (see `Become`)."""
        client = self.connect()
        timeout_secs = max(1, math.ceil(timeout)) if timeout else None
        try:
            client.set_timeout(timeout_secs + TIMEOUT_GRACE_SECS if timeout_secs else None)
            running = client.exec_start(command, cwd=self.target.remote_dir or None, env=env,
                                        timeout_secs=timeout_secs)
            held = {"stdout": [], "stderr": []}
            if become is not None and become.answer(running, held, self.max_output_bytes):
                # It ended before it ran (a refusal, in the output kept).
                running.end_stdin()
                return ExecResult(b"".join(held["stdout"]), b"".join(held["stderr"]),
                                  running.end)
            running.send_stdin(stdin)
            running.end_stdin()
            return running.collect(self.max_output_bytes, held)
        except (FerryError, OSError) as err:
            raise self._failed("running a command", err)

    def root(self):
        """The served root's absolute path, as the server's user sees it."""
        if self._root is None:
            client = self.connect()
            try:
                client.set_timeout(FILE_IO_TIMEOUT_SECS)
                result = client.exec("pwd -P", max_output_bytes=64 * 1024)
            except (FerryError, OSError) as err:
                raise self._failed("finding the served root", err)
            root = result.stdout.decode("utf-8", "surrogateescape").strip()
            if result.exit_status != 0 or not root.startswith("/"):
                raise RequestFailed("cannot tell ferry's root at %s: `pwd -P` said %r"
                                    % (self.target.address(), result.stderr[-500:]))
            self._root = root
        return self._root

    def beneath_root(self, remote_path):
        """`remote_path` relative to the served root, or `None` where
        ferry's file service cannot reach it."""
        if not remote_path.startswith("/"):
            rel = posixpath.join(self.target.remote_dir.strip("/"), remote_path)
        else:
            root = self.root().rstrip("/")
            path = posixpath.normpath(remote_path)
            if not path.startswith(root + "/"):
                return None
            rel = path[len(root) + 1:]
        rel = posixpath.normpath(rel)
        if rel in (".", "") or rel == ".." or rel.startswith("../"):
            return None
        return rel

    # -- files ----------------------------------------------------------

    def put(self, local, remote_path, mode=None, wrap=None):
        """Writes `local` (a file's path, or bytes with `mode`) to
        `remote_path`. `wrap(script)` turns a sh script into the command
        that runs it as another user; with it, the write goes by exec."""
        rel = None if wrap else self.beneath_root(remote_path)
        if isinstance(local, (bytes, bytearray)):
            with tempfile.TemporaryDirectory(prefix="ferry-fleet-") as tmp:
                path = os.path.join(tmp, "upload")
                with open(path, "wb") as f:
                    f.write(local)
                os.chmod(path, 0o644 if mode is None else mode & 0o777)
                return self._put_file(path, remote_path, rel, wrap)
        return self._put_file(local, remote_path, rel, wrap)

    def _put_file(self, local, remote_path, rel, wrap):
        if rel is not None:
            client = self.connect()
            directory, name = posixpath.split(rel)
            try:
                client.set_timeout(FILE_IO_TIMEOUT_SECS)
                client.put(local, directory, force=True, name=name)
            except (FerryError, OSError) as err:
                raise self._failed("writing %s" % remote_path, err)
            return
        digest = hashlib.sha256()
        with open(local, "rb") as f:
            data = f.read()
            digest.update(data)
        mode = os.stat(local).st_mode & 0o777
        script = write_script(remote_path, digest.hexdigest(), mode)
        result = self.run(wrap(script) if wrap else script, stdin=data)
        if result.exit_status != 0:
            raise RequestFailed("writing %s on %s failed (status %d): %s" % (
                remote_path, self.target.address(), result.exit_status,
                _tail(result.stderr)))

    def get(self, remote_path, local, wrap=None):
        """Reads `remote_path` into the local file `local`, which is
        replaced only by a complete, verified copy."""
        rel = None if wrap else self.beneath_root(remote_path)
        if rel is not None:
            client = self.connect()
            try:
                client.set_timeout(FILE_IO_TIMEOUT_SECS)
                client.get(rel, local)
            except (FerryError, OSError) as err:
                raise self._failed("reading %s" % remote_path, err)
            return
        script = read_script(remote_path)
        result = self.run(wrap(script) if wrap else script)
        stderr = result.stderr.decode("utf-8", "replace")
        if result.exit_status != 0:
            raise RequestFailed("reading %s on %s failed (status %d): %s" % (
                remote_path, self.target.address(), result.exit_status,
                _tail(result.stderr)))
        sums = [line[len(SUM_MARK):].strip() for line in stderr.splitlines()
                if line.startswith(SUM_MARK)]
        if not sums or sums[-1] != hashlib.sha256(result.stdout).hexdigest():
            raise RequestFailed("reading %s on %s: the file changed while it was read, or "
                                "arrived damaged; nothing was written"
                                % (remote_path, self.target.address()))
        write_local(local, result.stdout)


def write_local(path, data):
    """Writes `data` to the local file `path` as ferry_client's get does:
    a new partial file beside it, renamed into place once complete."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, partial = _create_partial(directory)
    with os.fdopen(fd, "wb") as out:
        try:
            out.write(data)
            os.fchmod(out.fileno(), _published_mode(None))
            out.flush()
            os.fsync(out.fileno())
            if not _names_file(partial, out.fileno()):
                raise RequestFailed("%s was replaced while it was being written" % partial)
            os.replace(partial, path)
        except BaseException:
            if _names_file(partial, out.fileno()):
                os.unlink(partial)
            raise


def _tail(stderr, limit=2000):
    """The end of a command's stderr, as text for an error message."""
    text = stderr.decode("utf-8", "replace").strip()
    return text[-limit:] if text else "(no message)"


class Become:
    """Answers a privilege-escalation password prompt: reads the output
    until the command says it is running (`success` on stdout) or asks
    for the password (`asks(output)` is true of stdout or stderr), and
    sends the password once. Output read meanwhile is kept for the
    result."""

    def __init__(self, password, asks, success):
        self.password = password
        self.asks = asks
        self.success = success

    def answer(self, running, held, max_output_bytes):
        """Whether the command ended before it said it runs."""
        seen = {"stdout": b"", "stderr": b""}
        sent = False
        while True:
            frame = running.next_output()
            if frame is None:
                return True
            channel, body = frame
            held[channel].append(body)
            seen[channel] += body
            if sum(len(v) for v in seen.values()) > max_output_bytes:
                raise FerryError("too_large", "over %d bytes before the command started"
                                 % max_output_bytes)
            if self.success and self.success in seen["stdout"]:
                return False
            if any(self.asks(seen[c]) for c in seen):
                if sent:
                    raise FerryError("become_failed", "the password was asked for twice: "
                                     "it is wrong")
                running.send_stdin(self.password + b"\n")
                sent = True
                seen = {"stdout": b"", "stderr": b""}

