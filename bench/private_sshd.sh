# shellcheck shell=bash
# bench/private_sshd.sh: the private sshd that transfer.sh and wan.sh compare
# against (sourced, not run).
#
# private_sshd_files DIR ADDR PORT writes into DIR a host key, a client key
# authorized for root, an sshd_config for ADDR:PORT (key-only root login, no
# PAM, internal sftp) and a client config that names the server "bench".
# Nothing outside DIR is read or written, so the machine's own ssh setup
# neither helps nor hurts the figures. Then:
#
#   sshd -D -e -f DIR/sshd_config      up once stderr says "Server listening"
#   ssh -F DIR/config bench true       scp -F and rsync -e "ssh -F ..." alike
#
# sshd also needs its privilege separation directory, /run/sshd, which its
# service normally makes; the caller makes it.

private_sshd_files() {
    local dir=$1 addr=$2 port=$3
    mkdir -p "$dir/home"
    ssh-keygen -q -t ed25519 -N '' -C ferry-bench-host -f "$dir/host_ed25519"
    ssh-keygen -q -t ed25519 -N '' -C ferry-bench-client -f "$dir/id_ed25519"
    cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
    cat >"$dir/sshd_config" <<EOF
ListenAddress $addr
Port $port
HostKey $dir/host_ed25519
PidFile none
AuthorizedKeysFile $dir/authorized_keys
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
X11Forwarding no
PrintMotd no
Subsystem sftp internal-sftp
# The remote rsync starts through root's shell, and Debian's bash reads
# ~/.bashrc for ssh commands: point HOME at an empty directory so the
# numbers are rsync's and ssh's, not whatever root's rc files run.
SetEnv HOME=$dir/home
EOF
    cat >"$dir/config" <<EOF
Host bench
    HostName $addr
    Port $port
    User root
    IdentityFile $dir/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $dir/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking no
    BatchMode yes
    LogLevel ERROR
    ControlMaster no
    ControlPath none
EOF
}
