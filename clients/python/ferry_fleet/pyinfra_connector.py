"""pyinfra's `@ferry` connector: inventory hosts written `@ferry/HOST[:PORT]`
or `@ferry/NAME` (a host of ferry's client config) run their commands
through ferry's `exec` and move files through `put` and `get`.

Registered under the `pyinfra.connectors` entry point group as `ferry` (see
pyproject.toml). Host data, all optional where the config or ferry's
known_hosts file has them:

    ferry_token_file     the file holding the token (never the token itself)
    ferry_fingerprint    SHA256:... of the server's certificate
    ferry_port           overrides the port written in the name
    ferry_config         another ferry client config file
    ferry_known_hosts    another ferry known_hosts file
    ferry_connect_timeout, ferry_max_output_bytes

Commands are built as pyinfra builds them for ssh (`sudo`, `su`, `doas`,
env, chdir, the sudo password retry), then run with `sh -c` on the server.
There is no terminal, so `_get_pty` is ignored. An unreachable server is a
ConnectError; a failed request is an OSError, which pyinfra reports as the
host's failure.
"""

import os
import tempfile

from pyinfra import logger
from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import ConnectError, InventoryError
from pyinfra.api.output import echo
from pyinfra.api.util import get_file_io
from pyinfra.connectors.base import BaseConnector, DataMeta
from pyinfra.connectors.util import (CommandOutput, OutputLine,
                                     execute_command_with_sudo_retry,
                                     make_unix_command_for_host)
from typing_extensions import TypedDict

from ferry_client import MAX_EXEC_OUTPUT_BYTES

from .session import RequestFailed, Session, Unreachable
from .target import TargetError, resolve

#: Arguments that make a transfer run as another user, so by exec.
BECOME_ARGUMENTS = ("_sudo", "_su_user", "_doas", "_dzdo")


class ConnectorData(TypedDict, total=False):
    ferry_hostname: str
    ferry_port: int
    ferry_token_file: str
    ferry_fingerprint: str
    ferry_config: str
    ferry_known_hosts: str
    ferry_connect_timeout: int
    ferry_max_output_bytes: int


connector_data_meta = {
    "ferry_hostname": DataMeta("HOST[:PORT], or a host name of ferry's client config"),
    "ferry_port": DataMeta("Port, over the one in the name or config"),
    "ferry_token_file": DataMeta("File holding the access token"),
    "ferry_fingerprint": DataMeta("The server's certificate, SHA256:..."),
    "ferry_config": DataMeta("ferry client config file (default: ferry's own)"),
    "ferry_known_hosts": DataMeta("ferry known_hosts file (default: ferry's own)"),
    "ferry_connect_timeout": DataMeta("Seconds to connect", 10),
    "ferry_max_output_bytes": DataMeta("Largest output of one command", MAX_EXEC_OUTPUT_BYTES),
}


def output_lines(stdout, stderr):
    """pyinfra's CommandOutput of the two streams, line by line."""
    lines = []
    for name, data in (("stdout", stdout), ("stderr", stderr)):
        text = data.decode("utf-8", "replace")
        if text.endswith("\n"):
            text = text[:-1]
        if text:
            lines.extend(OutputLine(name, line) for line in text.split("\n"))
    return CommandOutput(lines)


def stdin_bytes(stdin):
    """`_stdin` as pyinfra's ssh connector writes it: lines, each ended."""
    if not stdin:
        return b""
    if hasattr(stdin, "readlines"):
        stdin = stdin.readlines()
    if not isinstance(stdin, (list, tuple)):
        stdin = [stdin]
    out = []
    for line in stdin:
        if isinstance(line, bytes):
            line = line.decode("utf-8")
        out.append(line if line.endswith("\n") else line + "\n")
    return "".join(out).encode("utf-8")


class FerryConnector(BaseConnector):
    """Runs pyinfra's operations through a ferry server."""

    handles_execution = True
    data_cls = ConnectorData
    data_meta = connector_data_meta

    session = None

    @staticmethod
    def make_names_data(name=None):
        if not name:
            raise InventoryError("write ferry hosts as @ferry/HOST[:PORT] or @ferry/NAME")
        yield "@ferry/%s" % name, {"ferry_hostname": name}, []

    def connect(self):
        data = self.data
        try:
            target = resolve(
                data.get("ferry_hostname") or self.host.name, port=data.get("ferry_port"),
                token_file=data.get("ferry_token_file"),
                fingerprint=data.get("ferry_fingerprint"), config=data.get("ferry_config"),
                known_hosts=data.get("ferry_known_hosts"), warn=logger.warning)
        except TargetError as err:
            raise ConnectError(str(err))
        self.session = Session(target, connect_timeout=data.get("ferry_connect_timeout") or 10,
                               max_output_bytes=data.get("ferry_max_output_bytes")
                               or MAX_EXEC_OUTPUT_BYTES)
        try:
            self.session.connect()
        except Unreachable as err:
            raise ConnectError(str(err))

    def disconnect(self):
        if self.session is not None:
            self.session.close()

    def _run(self, command, **kwargs):
        try:
            return self.session.run(command, **kwargs)
        except (RequestFailed, Unreachable) as err:
            raise OSError(str(err))

    def run_shell_command(self, command, print_output=False, print_input=False, **arguments):
        arguments.pop("_get_pty", False)
        timeout = arguments.pop("_timeout", None)
        stdin = stdin_bytes(arguments.pop("_stdin", None))
        success_exit_codes = arguments.pop("_success_exit_codes", None)

        def execute_command():
            unix_command = make_unix_command_for_host(self.state, self.host, command, **arguments)
            logger.debug("Running command on %s over ferry: %s", self.host.name, unix_command)
            if print_input:
                echo("%s>>> %s" % (self.host.print_prefix, unix_command), err=True)
            result = self._run(unix_command.get_raw_value(), stdin=stdin, timeout=timeout)
            if result.timed_out:
                raise TimeoutError("the command ran past its %ss timeout and was killed"
                                   % timeout)
            output = output_lines(result.stdout, result.stderr)
            if print_output:
                for line in output:
                    echo("%s%s" % (self.host.print_prefix, line.line), err=True)
            return result.exit_status, output

        status, output = execute_command_with_sudo_retry(self.host, arguments, execute_command)
        if success_exit_codes:
            return status in success_exit_codes, output
        return status == 0, output

    def _wrap(self, arguments):
        """How a transfer's script runs as another user, or `None`."""
        if not any(arguments.get(name) for name in BECOME_ARGUMENTS):
            return None
        arguments = dict(arguments)
        for name in ("_get_pty", "_timeout", "_stdin", "_success_exit_codes"):
            arguments.pop(name, None)
        return lambda script: make_unix_command_for_host(
            self.state, self.host, StringCommand(script), **arguments).get_raw_value()

    def put_file(self, filename_or_io, remote_filename, remote_temp_filename=None,
                 print_output=False, print_input=False, **arguments):
        wrap = self._wrap(arguments)
        try:
            if isinstance(filename_or_io, str):
                self.session.put(filename_or_io, remote_filename, wrap=wrap)
            else:
                with get_file_io(filename_or_io) as file_io:
                    data = file_io.read()
                if isinstance(data, str):
                    data = data.encode("utf-8")
                self.session.put(data, remote_filename, wrap=wrap)
        except (RequestFailed, Unreachable) as err:
            raise OSError(str(err))
        if print_output:
            echo("%sfile uploaded: %s" % (self.host.print_prefix, remote_filename), err=True)
        return True

    def get_file(self, remote_filename, filename_or_io, remote_temp_filename=None,
                 print_output=False, print_input=False, **arguments):
        wrap = self._wrap(arguments)
        try:
            if isinstance(filename_or_io, str):
                self.session.get(remote_filename, filename_or_io, wrap=wrap)
            else:
                with tempfile.TemporaryDirectory(prefix="ferry-fleet-") as tmp:
                    path = os.path.join(tmp, "download")
                    self.session.get(remote_filename, path, wrap=wrap)
                    with open(path, "rb") as f, get_file_io(filename_or_io, "wb") as file_io:
                        file_io.write(f.read())
        except (RequestFailed, Unreachable) as err:
            raise OSError(str(err))
        if print_output:
            echo("%sfile downloaded: %s" % (self.host.print_prefix, remote_filename), err=True)
        return True
