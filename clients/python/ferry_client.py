"""A client of ferry's native protocol in one file, standard library only.

    from ferry_client import Client
    with Client.connect("127.0.0.1", 9001, token=TOKEN,
                        fingerprint="SHA256:...") as ferry:
        print(ferry.echo(b"hello", upper=True))
        print(ferry.ls(""))
        ferry.put("notes.txt", "backup")
        ferry.get("backup/notes.txt", "copy.txt")
        result = ferry.exec("ls -l; echo oops >&2")
        print(result.stdout, result.stderr, result.exit_status)

The wire format is PROTOCOL.md's: frames of a 4-byte little-endian header
length, a JSON header and `size` body bytes. Connections use TLS 1.3; the
server's certificate is self-signed and pinned by the SHA-256 of its DER
bytes (`SHA256:<base64 without padding>`, as `ferry serve` prints it),
checked after the handshake and before anything is sent, the token
included. `plaintext=True` speaks plain TCP (servers allow that on
loopback only).

Everything the server sends is distrusted: headers are capped at 64 KiB,
bodies held in memory at 64 MiB, names of downloaded files come from the
request and never from the server, and sizes must match what was asked.
Nor is anyone else who can write to the download directory: `get` writes
to a new partial file of a random name, created with O_EXCL and
O_NOFOLLOW and mode 0600, and renames it into place only if the name
still holds that file.

`put` needs BLAKE3, which the standard library lacks: the server keeps a
file only if it hashes to the sender's BLAKE3. It uses the `blake3` module
when installed (`pip install blake3`, fast) and otherwise the small
pure-Python BLAKE3 below (interpreted, so fine for notes and configs,
slow for large files; bench/RESULTS.md). `get` checks md5 (asked of the
server) always, and BLAKE3 too when the module is there.
"""

import base64
import hashlib
import json
import os
import secrets
import socket
import ssl
import struct

try:
    import blake3 as _blake3
except ImportError:  # optional: only put needs it
    _blake3 = None

PROTOCOL_VERSION = 1
CLIENT_NAME = "ferry_client.py"

#: Largest header accepted from the server, as the server caps its own.
MAX_HEADER_BYTES = 64 * 1024
#: Largest body held in memory (a listing, an echo, an error list).
MAX_BODY_BYTES = 64 * 1024 * 1024
#: Largest exec output collected in memory, stdout and stderr together.
MAX_EXEC_OUTPUT_BYTES = 64 * 1024 * 1024
#: Bytes read or written per step of a file transfer.
CHUNK_BYTES = 256 * 1024
#: Largest stdin frame the server accepts.
MAX_STDIN_FRAME_BYTES = 1024 * 1024
#: Partial files of `get` are named this plus 32 random hex digits, the
#: prefix ferry's own partials have, so ferry sweeps up any left behind.
PARTIAL_PREFIX = ".ferry-partial-"
#: Names tried for a new partial before giving up; another try is needed
#: only if someone holds the name, and a random name is never guessed.
PARTIAL_NAME_TRIES = 8


class FerryError(Exception):
    """An error the server answered with (`code` is its stable id), or a
    server that broke the protocol (`code` is `protocol`)."""

    def __init__(self, code, message):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


class FingerprintMismatch(FerryError):
    """The server's certificate is not the pinned one; nothing was sent."""


class ExecResult:
    """What `exec` returns: the output, apart, and how the command ended."""

    def __init__(self, stdout, stderr, end):
        self.stdout = stdout
        self.stderr = stderr
        self.exit_code = end.get("exit_code")
        self.signal = end.get("signal")
        self.timed_out = bool(end.get("timed_out", False))

    @property
    def exit_status(self):
        """The status a shell would report: the code, 128+signal, or 124
        after a timeout."""
        if self.timed_out:
            return 124
        if self.exit_code is not None:
            return self.exit_code
        return 128 + (self.signal or 0)


def fingerprint_of(der):
    """`SHA256:<base64 without padding>` of a DER certificate."""
    digest = hashlib.sha256(der).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


class _PureBlake3:
    """BLAKE3 (unkeyed, 32-byte output) in plain Python, for `put` when the
    `blake3` module is missing. Input goes in 1024-byte chunks of 64-byte
    blocks; chunk chaining values merge into a binary tree whose shape
    depends only on the number of chunks, kept as a stack."""

    IV = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
          0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)
    PERMUTATION = (2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8)
    CHUNK_START, CHUNK_END, PARENT, ROOT = 1, 2, 4, 8
    CHUNK_LEN, BLOCK_LEN = 1024, 64

    def __init__(self):
        self._stack = []     # chaining values of completed subtrees
        self._chunks = 0     # chunks completed
        self._chunk = b""    # the current chunk's bytes, at most CHUNK_LEN

    @staticmethod
    def _g(s, a, b, c, d, x, y):
        m = 0xFFFFFFFF
        s[a] = (s[a] + s[b] + x) & m
        t = s[d] ^ s[a]
        s[d] = ((t >> 16) | (t << 16)) & m
        s[c] = (s[c] + s[d]) & m
        t = s[b] ^ s[c]
        s[b] = ((t >> 12) | (t << 20)) & m
        s[a] = (s[a] + s[b] + y) & m
        t = s[d] ^ s[a]
        s[d] = ((t >> 8) | (t << 24)) & m
        s[c] = (s[c] + s[d]) & m
        t = s[b] ^ s[c]
        s[b] = ((t >> 7) | (t << 25)) & m

    @classmethod
    def _compress(cls, cv, block, counter, block_len, flags):
        """The first 8 words of the compression function's output."""
        m = list(struct.unpack("<16I", block))
        s = list(cv) + list(cls.IV[:4]) + [counter & 0xFFFFFFFF, counter >> 32, block_len, flags]
        g = cls._g
        for r in range(7):
            g(s, 0, 4, 8, 12, m[0], m[1])
            g(s, 1, 5, 9, 13, m[2], m[3])
            g(s, 2, 6, 10, 14, m[4], m[5])
            g(s, 3, 7, 11, 15, m[6], m[7])
            g(s, 0, 5, 10, 15, m[8], m[9])
            g(s, 1, 6, 11, 12, m[10], m[11])
            g(s, 2, 7, 8, 13, m[12], m[13])
            g(s, 3, 4, 9, 14, m[14], m[15])
            if r < 6:
                m = [m[i] for i in cls.PERMUTATION]
        return [s[i] ^ s[i + 8] for i in range(8)]

    @classmethod
    def _chunk_output(cls, data, index):
        """Compresses all but the last block of a chunk; returns the last
        block's inputs, the chunk's "output"."""
        blocks = max(1, -(-len(data) // cls.BLOCK_LEN))
        cv = cls.IV
        for i in range(blocks - 1):
            block = data[i * cls.BLOCK_LEN:(i + 1) * cls.BLOCK_LEN]
            cv = cls._compress(cv, block, index, cls.BLOCK_LEN, cls.CHUNK_START if i == 0 else 0)
        last = data[(blocks - 1) * cls.BLOCK_LEN:]
        flags = (cls.CHUNK_START if blocks == 1 else 0) | cls.CHUNK_END
        return (cv, last.ljust(cls.BLOCK_LEN, b"\0"), index, len(last), flags)

    @classmethod
    def _parent_output(cls, left, right):
        return (cls.IV, struct.pack("<8I", *left) + struct.pack("<8I", *right), 0,
                cls.BLOCK_LEN, cls.PARENT)

    def update(self, data):
        data = memoryview(data)
        while len(data):
            if len(self._chunk) == self.CHUNK_LEN:
                # More input follows, so this chunk is not the root.
                cv = self._compress(*self._chunk_output(self._chunk, self._chunks))
                self._chunks += 1
                total = self._chunks
                while total & 1 == 0:
                    cv = self._compress(*self._parent_output(self._stack.pop(), cv))
                    total >>= 1
                self._stack.append(cv)
                self._chunk = b""
            take = self.CHUNK_LEN - len(self._chunk)
            self._chunk += bytes(data[:take])
            data = data[take:]

    def hexdigest(self):
        output = self._chunk_output(self._chunk, self._chunks)
        for cv in reversed(self._stack):
            output = self._parent_output(cv, self._compress(*output))
        cv, block, _, block_len, flags = output
        words = self._compress(cv, block, 0, block_len, flags | self.ROOT)
        return struct.pack("<8I", *words).hex()


def _blake3_hasher():
    """The `blake3` module's hasher when installed, else the pure one."""
    return _blake3.blake3() if _blake3 else _PureBlake3()


def _create_partial(directory):
    """A new, empty partial file in `directory`, created by this call and
    no one else's: O_EXCL with O_NOFOLLOW refuses anything already at the
    name, a symlink planted there included, and the name is random, so
    nobody can plant one in advance. Mode 0600 until it is published.
    Returns the open descriptor and the path."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(PARTIAL_NAME_TRIES):
        path = os.path.join(directory, PARTIAL_PREFIX + secrets.token_hex(16))
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FerryError("io_error", "cannot create a partial file in %s: every name tried "
                     "was taken" % directory)


def _names_file(path, fd):
    """Whether `path` still names the file open as `fd`, and not a symlink
    or another file someone put in its place."""
    try:
        named = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _umask():
    """The process's umask, read without changing it where Linux says it
    (/proc/self/status), else by setting it and back."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _published_mode(mode):
    """The mode a downloaded file gets: the server's permission bits (never
    setuid, setgid or sticky), or 0666 if it sent none, less the umask, as
    any file this user creates."""
    if not isinstance(mode, int) or isinstance(mode, bool):
        mode = 0o666
    return mode & 0o777 & ~_umask()


def _protocol_error(message):
    return FerryError("protocol", message)


class Client:
    """One authenticated connection; requests run one after another."""

    def __init__(self, sock):
        self._sock = sock
        self.welcome = None

    @classmethod
    def connect(cls, host, port, token, fingerprint=None, plaintext=False, timeout=30.0):
        """Connects, checks the pin (TLS), and says hello with `token`.
        With TLS, `fingerprint` is required: a client that trusted any
        certificate would hand its token to whoever answered."""
        if not plaintext and not fingerprint:
            raise ValueError("TLS needs the server's fingerprint (SHA256:...); "
                             "`ferry serve` prints it at start")
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            # Frames go out at once: with Nagle's algorithm an exec's stdin
            # frame and its end frame, written back to back, stalled on the
            # server's delayed ACK (40 ms a command).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not plaintext:
                sock = cls._tls(sock, host, fingerprint)
            client = cls(sock)
            client._hello(token)
            return client
        except BaseException:
            sock.close()
            raise

    @staticmethod
    def _tls(sock, host, fingerprint):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        # No CA and no name to check: the certificate is self-signed and
        # identified by its pinned fingerprint, checked below.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        tls = context.wrap_socket(sock, server_hostname=host)
        der = tls.getpeercert(binary_form=True)
        got = fingerprint_of(der or b"")
        if got != fingerprint.rstrip("="):
            tls.close()
            raise FingerprintMismatch(
                "fingerprint_mismatch",
                "the server's certificate is %s, not the pinned %s; nothing was sent"
                % (got, fingerprint))
        return tls

    def _hello(self, token):
        self._send({"cmd": "hello", "version": PROTOCOL_VERSION, "token": token,
                    "client": CLIENT_NAME})
        self.welcome = self._reply()

    def close(self):
        self._sock.close()

    def set_timeout(self, seconds):
        """How long any one read or write may wait from now on (`None`:
        for ever), as `connect`'s `timeout` did until now."""
        self._sock.settimeout(seconds)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- frames ---------------------------------------------------------

    def _send(self, header, body=b""):
        header = dict(header)
        if body:
            header["size"] = len(body)
        data = json.dumps(header).encode("utf-8")
        self._sock.sendall(struct.pack("<I", len(data)) + data + body)

    def _recv_exact(self, n):
        parts = []
        while n > 0:
            part = self._sock.recv(min(n, CHUNK_BYTES))
            if not part:
                raise _protocol_error("the server closed the connection")
            parts.append(part)
            n -= len(part)
        return b"".join(parts)

    def _header(self):
        """The next header, checked: a JSON object under the cap with a
        sane `size`."""
        (length,) = struct.unpack("<I", self._recv_exact(4))
        if length == 0 or length > MAX_HEADER_BYTES:
            raise _protocol_error("a header of %d bytes (cap %d)" % (length, MAX_HEADER_BYTES))
        try:
            header = json.loads(self._recv_exact(length).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise _protocol_error("a header that is not JSON: %s" % err)
        if not isinstance(header, dict):
            raise _protocol_error("a header that is not a JSON object")
        size = header.get("size", 0)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _protocol_error("a header with a bad size: %r" % (size,))
        if header.get("ok") is False:
            self._skip(size)
            raise FerryError(str(header.get("code", "unknown")), str(header.get("message", "")))
        return header

    def _body(self, header, cap=MAX_BODY_BYTES):
        size = header.get("size", 0)
        if size > cap:
            raise _protocol_error("a body of %d bytes (cap %d)" % (size, cap))
        return self._recv_exact(size)

    def _skip(self, size):
        while size > 0:
            part = self._sock.recv(min(size, CHUNK_BYTES))
            if not part:
                return
            size -= len(part)

    def _reply(self):
        header = self._header()
        if header.get("ok") is not True:
            raise _protocol_error("expected an ok reply, got %r" % (header,))
        return header

    @staticmethod
    def _lines(body):
        try:
            return [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]
        except (UnicodeDecodeError, ValueError) as err:
            raise _protocol_error("a JSON-lines body that does not parse: %s" % err)

    # -- services -------------------------------------------------------

    def echo(self, data, upper=False):
        """The body back, ASCII letters upper-cased if `upper`."""
        self._send({"cmd": "echo", "upper": upper}, bytes(data))
        header = self._reply()
        if header.get("size", 0) != len(data):
            raise _protocol_error("echo answered %s bytes for %d" % (header.get("size"), len(data)))
        return self._body(header)

    def ls(self, path=""):
        """The entries of a remote directory (or one file), as dicts with
        `path` (or `path_b64` for a name that is not UTF-8), `kind`, `size`,
        `mode`, `mtime` and `mtime_ns`: the names `ferry ls --json` prints."""
        self._send({"cmd": "ls", "path": path})
        entries = self._lines(self._body(self._reply()))
        for entry in entries:
            if not isinstance(entry, dict):
                raise _protocol_error("a listing entry that is not an object: %r" % (entry,))
            entry["size"] = entry.pop("file_size", None)
        return entries

    def get(self, remote, local):
        """Downloads the file `remote` to `local` (a file name; a directory
        gets the remote's last name). The file is written beside its target
        under a new random name and renamed into place only once its md5
        (and BLAKE3, with the module) match, with the server's mode less
        the umask; returns its size."""
        if os.path.isdir(local):
            local = os.path.join(local, remote.rstrip("/").rsplit("/", 1)[-1])
        self._send({"cmd": "get", "path": remote, "recursive": False, "md5": True})
        reply = self._reply()
        entries = self._lines(self._body(reply))
        if len(entries) != 1 or entries[0].get("kind") != "file":
            raise _protocol_error("get of one file answered with %d entries" % len(entries))
        size = entries[0].get("file_size")
        if not isinstance(size, int) or size < 0:
            raise _protocol_error("a bad file_size: %r" % (size,))
        self._send({"wants": True},
                   json.dumps({"i": 0, "action": "send", "offset": 0}).encode() + b"\n")
        head = self._header()
        if head.get("file") != 0 or head.get("offset", 0) != 0 or head.get("size") != size:
            raise _protocol_error("a file frame that is not the one asked for: %r" % (head,))
        mode = entries[0].get("mode")
        fd, partial = _create_partial(os.path.dirname(os.path.abspath(local)))
        md5 = hashlib.md5()
        b3 = _blake3.blake3() if _blake3 else None
        with os.fdopen(fd, "wb") as out:
            try:
                left = size
                while left > 0:
                    chunk = self._sock.recv(min(left, CHUNK_BYTES))
                    if not chunk:
                        raise _protocol_error("the server closed in the middle of a file")
                    out.write(chunk)
                    md5.update(chunk)
                    if b3:
                        b3.update(chunk)
                    left -= len(chunk)
                end = self._header()
                if end.get("file_end") != 0:
                    raise _protocol_error("expected the end of the file, got %r" % (end,))
                if end.get("error"):
                    raise FerryError("changed", str(end["error"]))
                if end.get("md5") != md5.hexdigest():
                    raise FerryError("checksum_mismatch", "md5 differs from the server's")
                if b3 and end.get("blake3") != b3.hexdigest():
                    raise FerryError("checksum_mismatch", "BLAKE3 differs from the server's")
                last = self._header()
                if last.get("end") is not True:
                    raise _protocol_error("expected the end of the transfer, got %r" % (last,))
                os.fchmod(out.fileno(), _published_mode(mode))
                out.flush()
                os.fsync(out.fileno())
                # The rename publishes whatever the name holds now: it must
                # still be the file this call created and wrote.
                if not _names_file(partial, out.fileno()):
                    raise FerryError("changed", "%s was replaced while it was being written; "
                                     "nothing was published" % partial)
                os.replace(partial, local)
            except BaseException:
                # Only our own partial goes, never what someone put in its place.
                if _names_file(partial, out.fileno()):
                    os.unlink(partial)
                raise
        return size

    def put(self, local, remote_dir="", force=False, name=None):
        """Uploads the file `local` into the remote directory `remote_dir`
        (created if missing) under its own name, or under `name`. Returns
        the server's result: `files`, `bytes`, `skipped`, `failed`."""
        st = os.stat(local)
        name = os.path.basename(local) if name is None else name
        entry = {"kind": "file", "path": name, "file_size": st.st_size,
                 "mode": st.st_mode & 0o777, "mtime": int(st.st_mtime),
                 "mtime_ns": st.st_mtime_ns % 1_000_000_000}
        self._send({"cmd": "put", "path": remote_dir, "force": force, "resume": False,
                    "preserve": False}, json.dumps(entry).encode() + b"\n")
        wants = self._lines(self._body(self._reply()))
        for want in wants:
            if want.get("action") == "refuse":
                self._send({"end": True})
                self._result()
                raise FerryError(str(want.get("code")), str(want.get("message")))
        if any(w.get("i") == 0 and w.get("action") == "send" for w in wants):
            self._send_file(local, st.st_size)
        self._send({"end": True})
        return self._result()

    def _send_file(self, local, size):
        header = json.dumps({"file": 0, "offset": 0, "size": size}).encode("utf-8")
        self._sock.sendall(struct.pack("<I", len(header)) + header)
        b3 = _blake3_hasher()
        sent = 0
        with open(local, "rb") as f:
            while sent < size:
                chunk = f.read(min(CHUNK_BYTES, size - sent))
                if not chunk:
                    raise FerryError("changed", "%s shrank while it was being sent" % local)
                self._sock.sendall(chunk)
                b3.update(chunk)
                sent += len(chunk)
        self._send({"file_end": 0, "blake3": b3.hexdigest()})

    def _result(self):
        result = self._reply()
        failures = self._lines(self._body(result))
        if failures:
            first = failures[0]
            raise FerryError(str(first.get("code")), str(first.get("message")))
        return result

    def exec(self, command, stdin=b"", cwd=None, env=None, timeout_secs=None,
             max_output_bytes=MAX_EXEC_OUTPUT_BYTES):
        """Runs `command` (a string for `sh -c`, or a list run without a
        shell) and returns an ExecResult with stdout and stderr apart. An
        output over `max_output_bytes` raises FerryError `too_large`; the
        connection is then in the middle of the stream: close it."""
        running = self.exec_start(command, cwd=cwd, env=env, timeout_secs=timeout_secs)
        # stdin goes up at once and its end right after; the server reads
        # it alongside the command's output.
        running.send_stdin(stdin)
        running.end_stdin()
        return running.collect(max_output_bytes)

    def exec_start(self, command, cwd=None, env=None, timeout_secs=None):
        """Starts `command` as `exec` does and returns it running, for a
        caller that writes stdin as the output asks (a password prompt)."""
        request = {"cmd": "exec"}
        if isinstance(command, str):
            request["shell"] = command
        else:
            request["argv"] = list(command)
        if cwd is not None:
            request["cwd"] = cwd
        if env:
            request["env"] = dict(env)
        if timeout_secs is not None:
            request["timeout_secs"] = timeout_secs
        self._send(request)
        self._reply()
        return RunningCommand(self)


class RunningCommand:
    """A command `exec_start` started: stdin goes up with `send_stdin`,
    ended once by `end_stdin`; output comes back frame by frame from
    `next_output` or all at once from `collect`."""

    def __init__(self, client):
        self._client = client
        self._stdin_ended = False
        self.end = None

    def send_stdin(self, data):
        for start in range(0, len(data), MAX_STDIN_FRAME_BYTES):
            self._client._send({"data": "stdin"}, bytes(data[start:start + MAX_STDIN_FRAME_BYTES]))

    def end_stdin(self):
        if not self._stdin_ended:
            self._stdin_ended = True
            self._client._send({"end": True})

    def next_output(self, cap=MAX_BODY_BYTES):
        """`("stdout" | "stderr", bytes)`, or `None` once the command ended
        (its end frame is then `self.end`)."""
        header = self._client._header()
        if header.get("end") is True:
            self.end = header
            return None
        channel = header.get("data")
        if channel not in ("stdout", "stderr"):
            raise _protocol_error("an exec frame that is not stdout, stderr or end: %r"
                                  % (header,))
        return channel, self._client._body(header, cap)

    def collect(self, max_output_bytes=MAX_EXEC_OUTPUT_BYTES, held=None):
        """Reads the rest of the output, added to `held` (a dict of lists
        by channel), and returns the ExecResult."""
        out = held if held is not None else {"stdout": [], "stderr": []}
        total = sum(len(part) for parts in out.values() for part in parts)
        while True:
            frame = self.next_output()
            if frame is None:
                self.end_stdin()
                return ExecResult(b"".join(out["stdout"]), b"".join(out["stderr"]), self.end)
            channel, body = frame
            total += len(body)
            if total > max_output_bytes:
                raise FerryError("too_large", "the command wrote over %d bytes of output; it was "
                                 "stopped with the connection" % max_output_bytes)
            out[channel].append(body)
