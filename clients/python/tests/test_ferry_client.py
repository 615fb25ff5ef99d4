"""Tests of ferry_client.py against real servers, started by the Rust
integration test `compat::python_client` (cargo test), which passes:

    FERRY_TEST_HOST, FERRY_TEST_TOKEN
    FERRY_TEST_TLS_PORT, FERRY_TEST_FINGERPRINT, FERRY_TEST_TLS_ROOT
    FERRY_TEST_PLAIN_PORT, FERRY_TEST_PLAIN_TOKEN, FERRY_TEST_PLAIN_ROOT
    FERRY_TEST_BLAKE3_VECTORS

Both servers run with --allow-exec. The pure-Python BLAKE3 is checked
against hashes the Rust blake3 crate computed (FERRY_TEST_BLAKE3_VECTORS:
`LENGTH=HEX` pairs over `edge_data(LENGTH)`), and against the blake3 module
when it is installed (.ci/run installs it; the test is skipped otherwise).
"""

import os
import tempfile
import unittest
from unittest import mock

import ferry_client
from ferry_client import Client, FerryError, FingerprintMismatch

ENV = os.environ


class Common:
    """The same tests over TLS and plaintext; subclasses say how to connect."""

    root = None

    def connect(self, token=None):
        raise NotImplementedError

    def setUp(self):
        self.ferry = self.connect()
        self.addCleanup(self.ferry.close)
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def local(self, name, data):
        path = os.path.join(self.tmp.name, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_hello_lists_the_services(self):
        self.assertIn("exec", self.ferry.welcome["services"])

    def test_echo_returns_the_bytes_upper_cased(self):
        self.assertEqual(self.ferry.echo(b"hello \x00\xff", upper=True), b"HELLO \x00\xff")
        self.assertEqual(self.ferry.echo(b"Same"), b"Same")
        self.assertEqual(self.ferry.echo(b""), b"")

    def test_put_ls_get_round_trip(self):
        data = os.urandom(700_000)
        path = self.local("blob.bin", data)
        result = self.ferry.put(path, "up/%s" % self.id())
        self.assertEqual((result["files"], result["bytes"]), (1, len(data)))
        with open(os.path.join(self.root, "up", self.id(), "blob.bin"), "rb") as f:
            self.assertEqual(f.read(), data)
        entries = self.ferry.ls("up/%s" % self.id())
        self.assertEqual([(e["path"], e["kind"], e["size"]) for e in entries],
                         [("blob.bin", "file", len(data))])
        back = os.path.join(self.tmp.name, "back.bin")
        self.assertEqual(self.ferry.get("up/%s/blob.bin" % self.id(), back), len(data))
        with open(back, "rb") as f:
            self.assertEqual(f.read(), data)
        # Requests go on over the same connection.
        self.assertEqual(self.ferry.echo(b"still here"), b"still here")

    def test_get_names_the_file_from_the_request(self):
        sub = os.path.join(self.root, "named")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, "a.txt"), "wb") as f:
            f.write(b"alpha")
        self.ferry.get("named/a.txt", self.tmp.name)
        self.assertEqual(os.listdir(self.tmp.name), ["a.txt"])

    def test_errors_carry_the_servers_code_and_the_connection_goes_on(self):
        with self.assertRaises(FerryError) as caught:
            self.ferry.get("no/such/file", os.path.join(self.tmp.name, "x"))
        self.assertEqual(caught.exception.code, "not_found")
        with self.assertRaises(FerryError) as caught:
            self.ferry.ls("../outside")
        self.assertEqual(caught.exception.code, "bad_path")
        self.assertEqual(os.listdir(self.tmp.name), [], "nothing half-written")
        self.assertEqual(self.ferry.echo(b"ok"), b"ok")

    def test_exec_keeps_stdout_stderr_and_status_apart(self):
        result = self.ferry.exec("echo out; echo err >&2; exit 3")
        self.assertEqual(result.stdout, b"out\n")
        self.assertEqual(result.stderr, b"err\n")
        self.assertEqual(result.exit_status, 3)
        result = self.ferry.exec(["cat"], stdin=b"piped in")
        self.assertEqual((result.stdout, result.exit_status), (b"piped in", 0))
        result = self.ferry.exec("kill -9 $$")
        self.assertEqual((result.signal, result.exit_status), (9, 137))
        big = self.ferry.exec("seq 1 100000")
        self.assertEqual(big.stdout, "".join("%d\n" % n for n in range(1, 100001)).encode())

    def test_exec_output_over_the_cap_is_too_large(self):
        with self.assertRaises(FerryError) as caught:
            self.ferry.exec("yes", max_output_bytes=100_000)
        self.assertEqual(caught.exception.code, "too_large")

    def test_a_running_command_takes_stdin_as_its_output_asks(self):
        running = self.ferry.exec_start("read line; echo got $line; read again; echo $again")
        running.send_stdin(b"first\n")
        self.assertEqual(running.next_output(), ("stdout", b"got first\n"))
        running.send_stdin(b"second\n")
        running.end_stdin()
        result = running.collect()
        self.assertEqual((result.stdout, result.exit_status), (b"second\n", 0))
        # The connection is ready for the next request.
        self.assertEqual(self.ferry.echo(b"next"), b"next")

    def test_put_under_another_name(self):
        path = self.local("local-name.txt", b"renamed")
        self.ferry.put(path, "renamed/%s" % self.id(), name="remote-name.txt")
        remote = os.path.join(self.root, "renamed", self.id(), "remote-name.txt")
        with open(remote, "rb") as f:
            self.assertEqual(f.read(), b"renamed")

    def test_put_without_the_blake3_module_uses_the_pure_hash(self):
        # 33 chunks and a bit: a tree with merges on the way; the server
        # keeps the file only if its own BLAKE3 agrees.
        data = os.urandom(33 * 1024 + 100)
        path = self.local("pure.bin", data)
        with mock.patch.object(ferry_client, "_blake3", None):
            result = self.ferry.put(path, "pure/%s" % self.id())
        self.assertEqual((result["files"], result["failed"]), (1, 0))
        with open(os.path.join(self.root, "pure", self.id(), "pure.bin"), "rb") as f:
            self.assertEqual(f.read(), data)

    def test_get_publishes_nothing_if_its_partial_was_swapped(self):
        with open(os.path.join(self.root, "swapped.txt"), "wb") as f:
            f.write(b"from the server")
        victim = self.local("victim", b"precious")
        local = os.path.join(self.tmp.name, "copy.txt")
        mode_of = ferry_client._published_mode

        def swap_then_mode(mode):
            # Another user moves the partial away and plants a symlink at
            # its name, between the last write and the rename.
            (partial,) = [n for n in os.listdir(self.tmp.name)
                          if n.startswith(ferry_client.PARTIAL_PREFIX)]
            path = os.path.join(self.tmp.name, partial)
            os.rename(path, path + ".moved")
            os.symlink(victim, path)
            return mode_of(mode)

        with mock.patch.object(ferry_client, "_published_mode", swap_then_mode):
            with self.assertRaises(FerryError) as caught:
                self.ferry.get("swapped.txt", local)
        self.assertEqual(caught.exception.code, "changed")
        self.assertFalse(os.path.lexists(local), "nothing published")
        with open(victim, "rb") as f:
            self.assertEqual(f.read(), b"precious")
        planted = [n for n in os.listdir(self.tmp.name)
                   if n.startswith(ferry_client.PARTIAL_PREFIX) and not n.endswith(".moved")]
        self.assertEqual(len(planted), 1, "what was planted is left alone")
        self.assertTrue(os.path.islink(os.path.join(self.tmp.name, planted[0])))

    def test_a_wrong_token_is_refused(self):
        with self.assertRaises(FerryError) as caught:
            self.connect(token="not-the-token")
        self.assertEqual(caught.exception.code, "bad_token")


class Partials(unittest.TestCase):
    """The partial file of `get`: new, random, private, and never a name
    someone else prepared. No server needed."""

    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        self.victim = os.path.join(self.dir, "victim")
        with open(self.victim, "wb") as f:
            f.write(b"precious")

    def plant(self, suffix):
        os.symlink(self.victim, os.path.join(self.dir, ferry_client.PARTIAL_PREFIX + suffix))

    def test_a_taken_name_is_never_opened_and_the_new_file_is_private(self):
        self.plant("0" * 32)
        names = ["0" * 32, "1" * 32]
        with mock.patch.object(ferry_client.secrets, "token_hex", side_effect=names):
            fd, path = ferry_client._create_partial(self.dir)
        self.addCleanup(os.close, fd)
        self.assertEqual(os.path.basename(path), ferry_client.PARTIAL_PREFIX + "1" * 32)
        self.assertEqual(os.lstat(path).st_mode & 0o777, 0o600)
        os.write(fd, b"downloaded")
        with open(self.victim, "rb") as f:
            self.assertEqual(f.read(), b"precious")

    def test_names_are_unpredictable(self):
        fds = [ferry_client._create_partial(self.dir) for _ in range(2)]
        for fd, _ in fds:
            self.addCleanup(os.close, fd)
        (a, b) = [os.path.basename(path) for _, path in fds]
        self.assertNotEqual(a, b)
        self.assertEqual(len(a), len(ferry_client.PARTIAL_PREFIX) + 32)

    def test_it_gives_up_when_every_name_is_taken(self):
        self.plant("0" * 32)
        with mock.patch.object(ferry_client.secrets, "token_hex", return_value="0" * 32):
            with self.assertRaises(FerryError):
                ferry_client._create_partial(self.dir)

    def test_a_partial_swapped_under_its_name_is_noticed(self):
        fd, path = ferry_client._create_partial(self.dir)
        self.addCleanup(os.close, fd)
        self.assertTrue(ferry_client._names_file(path, fd))
        os.rename(path, path + ".moved")
        self.assertFalse(ferry_client._names_file(path, fd))
        os.symlink(self.victim, path)
        self.assertFalse(ferry_client._names_file(path, fd))

    def test_the_published_mode_is_the_servers_less_the_umask(self):
        old = os.umask(0o027)
        self.addCleanup(os.umask, old)
        self.assertEqual(ferry_client._umask(), 0o027)
        self.assertEqual(ferry_client._published_mode(0o775), 0o750)
        self.assertEqual(ferry_client._published_mode(0o4777), 0o750, "never setuid")
        self.assertEqual(ferry_client._published_mode(None), 0o640)
        self.assertEqual(ferry_client._published_mode(True), 0o640)


def edge_data(n):
    """n bytes that differ from block to block; the Rust test hashes the same."""
    return bytes(i % 251 for i in range(n))


class PureBlake3(unittest.TestCase):
    """The fallback BLAKE3 against published values, the Rust crate and the module."""

    # Lengths on either side of a block (64), a chunk (1024) and tree edges.
    EDGES = [1, 63, 64, 65, 1023, 1024, 1025, 2048, 2049, 3072, 4097, 8193, 16384, 31745]

    @staticmethod
    def pure(data, step=None):
        hasher = ferry_client._PureBlake3()
        step = step or max(1, len(data))
        for start in range(0, max(1, len(data)), step):
            hasher.update(data[start:start + step])
        return hasher.hexdigest()

    def test_published_values(self):
        self.assertEqual(self.pure(b""),
                         "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262")
        self.assertEqual(self.pure(b"abc"),
                         "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85")

    def test_agrees_with_the_rust_crate_across_block_chunk_and_tree_edges(self):
        vectors = dict(pair.split("=") for pair in ENV["FERRY_TEST_BLAKE3_VECTORS"].split())
        self.assertEqual(sorted(int(n) for n in vectors), self.EDGES)
        for n in self.EDGES:
            data = edge_data(n)
            expected = vectors[str(n)]
            self.assertEqual(self.pure(data), expected, n)
            self.assertEqual(self.pure(data, step=777), expected, (n, "in pieces"))

    @unittest.skipUnless(ferry_client._blake3,
                         "the blake3 module is missing: pip install blake3 (.ci/run does)")
    def test_agrees_with_the_module_across_block_chunk_and_tree_edges(self):
        for n in self.EDGES:
            data = edge_data(n)
            expected = ferry_client._blake3.blake3(data).hexdigest()
            self.assertEqual(self.pure(data), expected, n)
            self.assertEqual(self.pure(data, step=777), expected, (n, "in pieces"))


class OverTls(Common, unittest.TestCase):
    root = ENV.get("FERRY_TEST_TLS_ROOT")

    def connect(self, token=None):
        return Client.connect(ENV["FERRY_TEST_HOST"], int(ENV["FERRY_TEST_TLS_PORT"]),
                              token=token or ENV["FERRY_TEST_TOKEN"],
                              fingerprint=ENV["FERRY_TEST_FINGERPRINT"])

    def test_a_wrong_pin_stops_before_the_token_is_sent(self):
        wrong = "SHA256:" + "A" * 43
        with self.assertRaises(FingerprintMismatch):
            Client.connect(ENV["FERRY_TEST_HOST"], int(ENV["FERRY_TEST_TLS_PORT"]),
                           token=ENV["FERRY_TEST_TOKEN"], fingerprint=wrong)

    def test_tls_without_a_pin_is_refused_locally(self):
        with self.assertRaises(ValueError):
            Client.connect(ENV["FERRY_TEST_HOST"], int(ENV["FERRY_TEST_TLS_PORT"]),
                           token=ENV["FERRY_TEST_TOKEN"])

    def test_the_fingerprint_is_the_servers(self):
        der = self.ferry._sock.getpeercert(binary_form=True)
        self.assertEqual(ferry_client.fingerprint_of(der), ENV["FERRY_TEST_FINGERPRINT"])


class OverPlaintext(Common, unittest.TestCase):
    root = ENV.get("FERRY_TEST_PLAIN_ROOT")

    def connect(self, token=None):
        return Client.connect(ENV["FERRY_TEST_HOST"], int(ENV["FERRY_TEST_PLAIN_PORT"]),
                              token=token or ENV["FERRY_TEST_PLAIN_TOKEN"], plaintext=True)


if __name__ == "__main__":
    unittest.main()
