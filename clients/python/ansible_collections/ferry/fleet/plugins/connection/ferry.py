# ferry as Ansible's transport. Usable as the collection's ferry.fleet.ferry,
# or by path as `ferry` (ANSIBLE_CONNECTION_PLUGINS=this directory).
from __future__ import annotations

DOCUMENTATION = """
    name: ferry
    short_description: run tasks through a ferry server
    description:
        - Commands run through the server's C(exec) (C(sh -c)), as the server's user; files go
          through its verified, atomic C(put) and C(get) where they lie beneath the served root,
          and through C(exec) with a SHA-256 check and an atomic rename elsewhere.
        - The server must run with C(--allow-exec). Its certificate must be pinned (a fingerprint
          given, in ferry's config, or in ferry's known_hosts); the token is read from a file.
        - Needs the C(ferry_client) and C(ferry_fleet) modules in Ansible's Python
          (C(pip install ./clients/python) from ferry's repository).
    author: ferry developers
    options:
        host:
            description: The server's address, or a host name of ferry's client config.
            default: inventory_hostname
            vars:
                - name: inventory_hostname
                - name: ansible_host
                - name: ansible_ferry_host
        port:
            description: The server's port (default that of the config, else 9001).
            type: int
            vars:
                - name: ansible_port
                - name: ansible_ferry_port
        token_file:
            description: The file holding the access token; never the token itself.
            vars:
                - name: ansible_ferry_token_file
            env:
                - name: FERRY_TOKEN_FILE
        fingerprint:
            description: The server's certificate, C(SHA256:...), as C(ferry serve) prints it.
            vars:
                - name: ansible_ferry_fingerprint
            env:
                - name: FERRY_FINGERPRINT
        config:
            description: ferry's client config file (default ferry's own).
            vars:
                - name: ansible_ferry_config
            env:
                - name: FERRY_CONFIG
        known_hosts:
            description: ferry's known_hosts file (default ferry's own).
            vars:
                - name: ansible_ferry_known_hosts
        timeout:
            description: Seconds to connect.
            type: int
            default: 10
            vars:
                - name: ansible_timeout
                - name: ansible_ferry_timeout
        command_timeout:
            description: Seconds a command may run before the server kills it (default none).
            type: int
            vars:
                - name: ansible_ferry_command_timeout
        max_output_bytes:
            description: Largest output of one command; past it the task fails.
            type: int
            default: 67108864
            vars:
                - name: ansible_ferry_max_output_bytes
        pipelining:
            description:
                - Send modules on the command's stdin instead of as files. ferry's exec never has a
                  terminal and answers a become password prompt before the module goes up, so
                  this is on by default.
            type: boolean
            default: true
            env:
                - name: ANSIBLE_PIPELINING
            vars:
                - name: ansible_pipelining
                - name: ansible_ferry_pipelining
"""

import os
import sys

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

try:
    from ferry_fleet.session import Become, RequestFailed, Session, Unreachable
    from ferry_fleet.target import TargetError, resolve
except ImportError:
    # Used by path from ferry's repository: clients/python is five levels up.
    sys.path.append(os.path.abspath(os.path.join(os.path.dirname(__file__),
                                                 *([os.pardir] * 5))))
    try:
        from ferry_fleet.session import Become, RequestFailed, Session, Unreachable
        from ferry_fleet.target import TargetError, resolve
    except ImportError as err:
        raise ImportError("the ferry connection needs ferry_fleet in Ansible's Python: "
                          "pip install ./clients/python from ferry's repository (%s)" % err)

display = Display()


class Connection(ConnectionBase):
    """Tasks through a ferry server."""

    transport = "ferry"
    has_pipelining = True
    # No terminal: become must not count on one.
    has_tty = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._session = None

    def _connect(self):
        if self._connected:
            return self
        try:
            target = resolve(
                self.get_option("host"), port=self.get_option("port"),
                token_file=self.get_option("token_file"),
                fingerprint=self.get_option("fingerprint"), config=self.get_option("config"),
                known_hosts=self.get_option("known_hosts"), warn=display.warning)
        except TargetError as err:
            raise AnsibleConnectionFailure(str(err))
        self._session = Session(target, connect_timeout=self.get_option("timeout"),
                                max_output_bytes=self.get_option("max_output_bytes"))
        try:
            self._session.connect()
        except Unreachable as err:
            raise AnsibleConnectionFailure(str(err))
        display.vvv("ESTABLISH FERRY CONNECTION TO %s" % target.address(),
                    host=target.address())
        self._connected = True
        return self

    def _request(self, what, call, *args, **kwargs):
        """Runs a session call; ferry's failures become Ansible's."""
        try:
            return call(*args, **kwargs)
        except Unreachable as err:
            self._connected = False
            raise AnsibleConnectionFailure(str(err))
        except RequestFailed as err:
            raise AnsibleError("%s failed: %s" % (what, err))

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        display.vvv("EXEC %s" % to_text(cmd), host=self._session.target.address())
        become = None
        if sudoable and self.become and self.become.expect_prompt():
            become = Become(to_bytes(self.become.get_option("become_pass")) or b"",
                            self.become.check_password_prompt,
                            to_bytes(self.become.success))
        result = self._request("the command", self._session.run, to_text(cmd),
                               stdin=in_data or b"", timeout=self.get_option("command_timeout"),
                               become=become)
        if result.timed_out:
            raise AnsibleError("the command ran past ansible_ferry_command_timeout (%ss); the "
                               "server killed it" % self.get_option("command_timeout"))
        return result.exit_status, result.stdout, result.stderr

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        display.vvv("PUT %s TO %s" % (in_path, out_path), host=self._session.target.address())
        if not os.path.isfile(to_bytes(in_path, errors="surrogate_or_strict")):
            raise AnsibleFileNotFound("file or module does not exist: %s" % in_path)
        self._request("copying %s to %s" % (in_path, out_path), self._session.put,
                      in_path, out_path)

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        display.vvv("FETCH %s TO %s" % (in_path, out_path), host=self._session.target.address())
        self._request("fetching %s to %s" % (in_path, out_path), self._session.get,
                      in_path, out_path)

    def reset(self):
        self.close()

    def close(self):
        if self._session is not None:
            self._session.close()
        self._connected = False
