# pyinfra deploy of tests/fleet/pyinfra.rs's bad input: each must fail
# clearly, and the host go on to the next.
from pyinfra import host
from pyinfra.operations import files, server

server.shell(name="Endless output", commands=["yes"], _ignore_errors=True)
server.shell(name="A command that never ends", commands=["sleep 86400.25"], _timeout=2,
             _ignore_errors=True)
files.get(name="Fetch a hostile name", src=host.data.root + "/" + host.data.hostile,
          dest=host.data.fetch_to)
server.shell(name="Still connected", commands=["echo still-here > still.txt"])
