#!/bin/sh
# Run by the playbook's script task on the server: $1 is its root.
printf 'script ran\n' > "$1/script.txt"
