"""Unit tests of ferry_fleet's pure parts: host names, config and pins, the
paths ferry's file service reaches, and the sh scripts of the exec path
(run here by the machine's own sh). The engines themselves run in
tests/fleet/ of the Rust suite."""

import hashlib
import os
import subprocess
import tempfile
import unittest

from ferry_fleet import session as fleet_session
from ferry_fleet.target import (Target, TargetError, parse_address, pinned_fingerprint,
                                resolve)

FP = "SHA256:" + "A" * 43


class Addresses(unittest.TestCase):
    def test_host_and_port_forms(self):
        self.assertEqual(parse_address("web1"), ("web1", 9001))
        self.assertEqual(parse_address("10.0.0.1:9100"), ("10.0.0.1", 9100))
        self.assertEqual(parse_address("[::1]"), ("::1", 9001))
        self.assertEqual(parse_address("[::1]:9002"), ("::1", 9002))
        self.assertEqual(Target("::1", 9002, None, None).address(), "[::1]:9002")

    def test_bad_addresses_say_what_to_write(self):
        for bad in ("", "::1", "host:", "host:0", "host:65536", "host:x", "[::1", ":9001",
                    "[::1]x"):
            with self.assertRaises(TargetError, msg=bad):
                parse_address(bad)


class Resolve(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.dir = os.path.join(self.tmp.name, "ferry")
        os.mkdir(self.dir)
        self.env = {"XDG_CONFIG_HOME": self.tmp.name}
        self.token = os.path.join(self.dir, "nas.token")
        with open(self.token, "w") as f:
            f.write("secret\n")
        os.chmod(self.token, 0o600)

    def write(self, name, text):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(text)

    def test_a_config_name_gives_server_token_file_pin_and_remote_dir(self):
        self.write("config.toml", '[hosts.nas]\nserver = "nas.lan:9100"\n'
                   'token-file = "nas.token"\nfingerprint = "%s"\nremote-dir = "backup"\n' % FP)
        target = resolve("nas", environ=self.env)
        self.assertEqual((target.host, target.port), ("nas.lan", 9100))
        self.assertEqual(target.token_file, self.token)
        self.assertEqual((target.fingerprint, target.remote_dir), (FP, "backup"))
        self.assertEqual(target.token(), "secret")
        # The engine's settings beat the config's.
        self.assertEqual(resolve("nas", port=9200, environ=self.env).port, 9200)

    def test_an_address_takes_its_pin_from_known_hosts(self):
        self.write("known_hosts", "# pins\n127.0.0.1:9005 %s\n" % FP)
        target = resolve("127.0.0.1:9005", token_file=self.token, environ=self.env)
        self.assertEqual(target.fingerprint, FP)

    def test_no_pin_and_no_token_file_are_refused_before_connecting(self):
        with self.assertRaisesRegex(TargetError, "no pinned fingerprint"):
            resolve("127.0.0.1:9005", token_file=self.token, environ=self.env)
        with self.assertRaisesRegex(TargetError, "no token file"):
            resolve("127.0.0.1:9005", fingerprint=FP, environ=self.env)
        with self.assertRaisesRegex(TargetError, "SHA256"):
            resolve("127.0.0.1:9005", token_file=self.token, fingerprint="abc",
                    environ=self.env)

    def test_two_pins_for_one_server_are_an_error(self):
        self.write("known_hosts", "h:1 %s\nh:1 SHA256:%s\n" % (FP, "B" * 43))
        with self.assertRaisesRegex(TargetError, "more than one"):
            pinned_fingerprint(os.path.join(self.dir, "known_hosts"), "h", 1)

    def test_an_open_token_file_is_warned_about(self):
        os.chmod(self.token, 0o644)
        warnings = []
        resolve("h:1", token_file=self.token, fingerprint=FP, environ=self.env,
                warn=warnings.append)
        self.assertEqual(len(warnings), 1)
        self.assertIn("chmod 600", warnings[0])


class BeneathRoot(unittest.TestCase):
    def session(self, remote_dir=""):
        s = fleet_session.Session(Target("h", 1, None, FP, remote_dir))
        s._root = "/srv/root"
        return s

    def test_paths_beneath_the_root_are_relative_to_it(self):
        s = self.session()
        self.assertEqual(s.beneath_root("/srv/root/etc/app.conf"), "etc/app.conf")
        self.assertEqual(s.beneath_root("/srv/root/a/../b"), "b")
        self.assertEqual(s.beneath_root("etc/x"), "etc/x")
        self.assertEqual(self.session("backup").beneath_root("x"), "backup/x")

    def test_other_paths_go_by_exec(self):
        s = self.session()
        for path in ("/srv/rootx/a", "/srv/root", "/srv/root/../x", "/tmp/a", "../a", "."):
            self.assertIsNone(s.beneath_root(path), path)


class Scripts(unittest.TestCase):
    """The exec path's scripts, run by sh in a temporary directory."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.name = "-x\n;$(touch PWNED)'\"`touch PWNED2`"

    def sh(self, script, stdin=b""):
        return subprocess.run(["sh", "-c", script], input=stdin, capture_output=True,
                              cwd=self.tmp.name)

    def listing(self):
        return sorted(os.listdir(self.tmp.name))

    def test_a_write_lands_whole_under_a_hostile_name_with_its_mode(self):
        data = b"bytes\x00\xff\n" * 100
        dest = os.path.join(self.tmp.name, self.name)
        done = self.sh(fleet_session.write_script(dest, hashlib.sha256(data).hexdigest(), 0o640),
                       data)
        self.assertEqual(done.returncode, 0, done.stderr)
        with open(dest, "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(os.stat(dest).st_mode & 0o777, 0o640)
        self.assertEqual(self.listing(), [self.name])

    def test_a_damaged_write_leaves_nothing(self):
        dest = os.path.join(self.tmp.name, "file")
        done = self.sh(fleet_session.write_script(dest, "0" * 64, 0o644), b"data")
        self.assertEqual(done.returncode, fleet_session.DAMAGED_STATUS)
        self.assertIn(b"damaged", done.stderr)
        self.assertEqual(self.listing(), [])

    def test_a_read_sends_the_bytes_and_their_sum(self):
        data = os.urandom(5000)
        src = os.path.join(self.tmp.name, self.name)
        with open(src, "wb") as f:
            f.write(data)
        done = self.sh(fleet_session.read_script(src))
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout, data)
        self.assertIn((fleet_session.SUM_MARK + hashlib.sha256(data).hexdigest()).encode(),
                      done.stderr)
        self.assertEqual(self.listing(), [self.name])

    def test_a_read_of_a_directory_fails(self):
        done = self.sh(fleet_session.read_script(self.tmp.name))
        self.assertNotEqual(done.returncode, 0)
        self.assertIn(b"not a regular file", done.stderr)


class LocalWrite(unittest.TestCase):
    def test_write_local_replaces_the_file_and_leaves_no_partial(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "out")
            with open(path, "w") as f:
                f.write("old")
            fleet_session.write_local(path, b"new")
            with open(path, "rb") as f:
                self.assertEqual(f.read(), b"new")
            self.assertEqual(os.listdir(tmp), ["out"])


if __name__ == "__main__":
    unittest.main()
