# pyinfra deploy of tests/fleet/pyinfra.rs: each host's data names its root
# and where to put a file outside it.
from pyinfra import host
from pyinfra.operations import files, server

root = host.data.root
files.directory(name="Make a directory", path=root + "/etc/app", mode="750")
files.put(name="Put a file", src=host.data.src_file, dest=root + "/etc/app/app.conf", mode="640")
files.template(name="Render a template", src=host.data.template, dest=root + "/etc/motd",
               greeting="hello fleet")
server.shell(name="Run a shell command", commands=["pwd -P > where.txt; echo to-stderr >&2"])
files.put(name="Put a file outside the root", src=host.data.src_file,
          dest=host.data.outside + "/outside.conf")
