"""Which server a fleet host names, and how to trust it: the address, the
token file and the pinned fingerprint, found the way `ferry` finds them.

A host is `HOST[:PORT]` (`[::1]:9001` for IPv6; 9001 when no port is
given) or the name of a `[hosts.NAME]` table of the client config file
(`$XDG_CONFIG_HOME/ferry/config.toml`, as `ferry hosts` lists them). A
setting given to the engine beats the config's. The fingerprint must be
known before anything is sent: given, in the config, or pinned in ferry's
known_hosts file (`HOST:PORT SHA256:...` lines). Nothing here trusts a
certificate on first use, and a token is only ever read from a file.

Pure apart from reading those files: no sockets.
"""

import os
import stat

DEFAULT_PORT = 9001
CONFIG_FILE = "config.toml"
KNOWN_HOSTS_FILE = "known_hosts"
#: Largest config, known-hosts or token file read, as ferry caps its config.
MAX_FILE_BYTES = 1024 * 1024


class TargetError(Exception):
    """A host that cannot be reached as written: a bad address, no token
    file, no pinned fingerprint. The message says what to do."""


class Target:
    """Everything needed to connect to one ferry server."""

    def __init__(self, host, port, token_file, fingerprint, remote_dir=""):
        self.host = host
        self.port = port
        self.token_file = token_file
        self.fingerprint = fingerprint
        self.remote_dir = remote_dir or ""

    def address(self):
        """`HOST:PORT`, brackets around an IPv6 address."""
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s:%d" % (host, self.port)

    def token(self):
        """The token, read from its file (never from a command line)."""
        try:
            with open(self.token_file, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as err:
            raise TargetError("cannot read the token file %s for %s: %s"
                              % (self.token_file, self.address(), err.strerror or err))
        if len(data) > MAX_FILE_BYTES:
            raise TargetError("the token file %s is over %d bytes, so not a token file"
                              % (self.token_file, MAX_FILE_BYTES))
        token = data.decode("utf-8", "replace").strip()
        if not token:
            raise TargetError("the token file %s is empty" % self.token_file)
        return token

    def __repr__(self):
        return "Target(%s, token_file=%r, fingerprint=%r, remote_dir=%r)" % (
            self.address(), self.token_file, self.fingerprint, self.remote_dir)


def parse_address(text, default_port=DEFAULT_PORT):
    """`(host, port)` of `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT`."""
    text = text.strip()
    if not text:
        raise TargetError("an empty host; write HOST[:PORT], as 127.0.0.1:9001")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise TargetError("%r: an IPv6 address needs its closing bracket" % text)
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise TargetError("%r: only :PORT may follow [ADDRESS]" % text)
        port = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif ":" in text:
        raise TargetError("%r: write an IPv6 address in brackets, as in [::1]:%d"
                          % (text, default_port))
    else:
        host, port = text, None
    if not host:
        raise TargetError("%r: no host before the port" % text)
    if port is None or port == "":
        if port == "":
            raise TargetError("%r: no port after the colon" % text)
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise TargetError("%r: the port must be a number from 1 to 65535" % text)
    return host, int(port)


def config_dir(environ=None):
    """ferry's client config directory: `$XDG_CONFIG_HOME/ferry`, else
    `~/.config/ferry`; `None` when neither variable is set."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or (
        os.path.join(environ["HOME"], ".config") if environ.get("HOME") else None)
    return os.path.join(base, "ferry") if base else None


def _read_text(path):
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise TargetError("%s is over %d bytes" % (path, MAX_FILE_BYTES))
    return data.decode("utf-8")


def load_config_hosts(path):
    """The `[hosts.NAME]` tables of a ferry client config file, by name,
    token files resolved as ferry resolves them; `{}` if it is missing."""
    try:
        text = _read_text(path)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        raise TargetError("cannot read the ferry config %s: %s" % (path, err))
    try:
        import tomllib
    except ImportError:  # Python before 3.11
        raise TargetError("reading host names from %s needs Python 3.11 or later (tomllib); "
                          "write HOST:PORT with a token file and fingerprint instead" % path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise TargetError("%s is not valid TOML: %s" % (path, err))
    hosts = doc.get("hosts", {})
    if not isinstance(hosts, dict):
        raise TargetError("%s: `hosts` must be a table of [hosts.NAME] tables" % path)
    base = os.path.dirname(os.path.abspath(path))
    found = {}
    for name, entry in hosts.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("server"), str):
            raise TargetError("%s: [hosts.%s] needs server = \"HOST:PORT\"" % (path, name))
        token_file = entry.get("token-file")
        if isinstance(token_file, str):
            token_file = _resolve_path(base, token_file)
        found[name] = {
            "server": entry["server"],
            "token_file": token_file if isinstance(token_file, str) else None,
            "fingerprint": entry.get("fingerprint") if isinstance(
                entry.get("fingerprint"), str) else None,
            "remote_dir": entry.get("remote-dir") if isinstance(
                entry.get("remote-dir"), str) else "",
        }
    return found


def _resolve_path(base, path):
    """As ferry reads a config's paths: `~/` from HOME, relative ones from
    the config file's directory."""
    if path.startswith("~/"):
        return os.path.join(os.path.expanduser("~"), path[2:])
    return os.path.join(base, path)


def pinned_fingerprint(known_hosts, host, port):
    """The fingerprint pinned for `host:port` in a ferry known_hosts file,
    or `None`. Two different pins for the one key are an error."""
    try:
        text = _read_text(known_hosts)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise TargetError("cannot read %s: %s" % (known_hosts, err))
    key = Target(host, port, None, None).address()
    pins = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and fields[0] == key:
            pins.add(fields[1])
    if len(pins) > 1:
        raise TargetError("%s pins %s to more than one certificate; remove the wrong line"
                          % (known_hosts, key))
    return pins.pop() if pins else None


def _warn_open_token_file(path, warn):
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if warn and mode & (stat.S_IRWXG | stat.S_IRWXO):
        warn("the token file %s is open to other users; chmod 600 it" % path)


def resolve(name, port=None, token_file=None, fingerprint=None, config=None,
            known_hosts=None, remote_dir=None, environ=None, warn=None):
    """The Target that `name` means, with the engine's settings (any of
    which may be `None`) beating the config file's."""
    environ = os.environ if environ is None else environ
    directory = config_dir(environ)
    if config is None and directory:
        config = os.path.join(directory, CONFIG_FILE)
    if known_hosts is None and directory:
        known_hosts = os.path.join(directory, KNOWN_HOSTS_FILE)
    entry = load_config_hosts(config).get(name) if config else None
    if entry:
        host, config_port = parse_address(entry["server"])
        token_file = token_file or entry["token_file"]
        fingerprint = fingerprint or entry["fingerprint"]
        remote_dir = entry["remote_dir"] if remote_dir is None else remote_dir
    else:
        host, config_port = parse_address(name)
    port = int(port) if port else config_port
    if not 0 < port < 65536:
        raise TargetError("port %d of %s is not from 1 to 65535" % (port, name))
    where = Target(host, port, None, None).address()
    if not token_file:
        raise TargetError("no token file for %s: give one (ferry_token_file, "
                          "ansible_ferry_token_file), or name a host of %s that has one "
                          "(ferry pair writes them)" % (where, config or "the ferry config"))
    token_file = os.path.expanduser(token_file)
    _warn_open_token_file(token_file, warn)
    if not fingerprint and known_hosts:
        fingerprint = pinned_fingerprint(known_hosts, host, port)
    if not fingerprint:
        raise TargetError("no pinned fingerprint for %s: give the SHA256:... that `ferry serve` "
                          "printed (ferry_fingerprint, ansible_ferry_fingerprint), or pin it "
                          "once with `ferry --server %s echo hi`"
                          % (where, where))
    if not fingerprint.startswith("SHA256:"):
        raise TargetError("the fingerprint of %s must read SHA256:..., not %r"
                          % (where, fingerprint))
    return Target(host, port, token_file, fingerprint, remote_dir or "")
