#!/usr/bin/env bash
# bench/fleet.sh: one 20-task Ansible playbook against 4 servers on
# 127.0.0.1, over ssh and over ferry, timed whole (wall time of
# ansible-playbook, median of RUNS, default 3, the transports taking turns):
#
#   ssh, Ansible's defaults     ssh_args -C -o ControlMaster=auto -o ControlPersist=60s,
#                               no pipelining; a fresh ControlPath directory each run, so
#                               each run opens its masters as a first run does
#   ssh, ControlPersist off     -o ControlMaster=no: a new ssh connection per step
#   ssh, defaults + pipelining  shown for fairness: ferry pipelines by default
#   ferry                       ansible_connection=ferry.fleet.ferry (its defaults)
#
# Goals: ferry faster than Ansible's default ssh, and at most 0.5 x ssh
# without ControlPersist.
#
# Four private sshd (own config, host key and port each, UsePAM no, key
# login only) and four `ferry serve --allow-exec` run as the non-root user
# BENCH_USER (default ferrybench, created if missing, left in place unless
# REMOVE_USER=1) with a root each; ansible-playbook runs as the invoking
# user (root) from the venv FERRY_FLEET_VENV (default target/fleet-venv,
# made with pyinfra's and ansible-core's wheels if missing), with
# clients/python installed into a temporary directory. The bench appends one
# marked line to BENCH_USER's ~/.ssh/authorized_keys and removes it on exit,
# with every process it started (by PID) and its temporary directory.
#
# Usage: bench/fleet.sh          (as root; build first: cargo build --release)
#
# Environment:
#   FERRY=target/release/ferry  RUNS=3  BENCH_USER=ferrybench  REMOVE_USER=0
#   FERRY_FLEET_VENV=target/fleet-venv  TOTAL_TIMEOUT=1800 (seconds)
#   CONTENDERS="ssh-default ssh-no-persist ssh-pipelining ferry"   the rows to run
#
# Exit status: 0 both goals met, 1 a goal missed, 2 the bench itself failed.

# Functions run through traps: not unreachable.
# shellcheck disable=SC2317
set -euo pipefail

RUNS=${RUNS:-3}
BENCH_USER=${BENCH_USER:-ferrybench}
REMOVE_USER=${REMOVE_USER:-0}
TOTAL_TIMEOUT=${TOTAL_TIMEOUT:-1800}
SERVERS=4

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
VENV=${FERRY_FLEET_VENV:-$REPO/target/fleet-venv}

say() { printf '%s\n' "$*" >&2; }
die() {
    say "fleet.sh: $*"
    exit 2
}

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number, not '$RUNS'"
[[ $TOTAL_TIMEOUT =~ ^[0-9]+$ ]] || die "TOTAL_TIMEOUT must be a number"
if [[ -z ${_FLEET_BENCH_BOUNDED:-} ]]; then
    export _FLEET_BENCH_BOUNDED=1
    exec timeout --foreground -k 30 "$TOTAL_TIMEOUT" "$BASH" "$0" "$@"
fi
[[ $(id -u) == 0 ]] || die "run as root: it creates a user and starts sshd"

SSHD=/usr/sbin/sshd
[[ -x $SSHD ]] || die "no $SSHD (apt-get install openssh-server)"
for tool in ssh ssh-keygen python3 setpriv useradd timeout; do
    command -v "$tool" >/dev/null || die "no $tool"
done
FERRY=${FERRY:-$REPO/target/release/ferry}
[[ -x $FERRY ]] || die "no ferry binary at $FERRY: run cargo build --release, or set FERRY"
if ! "$VENV/bin/python3" -c 'import ansible, setuptools, wheel' 2>/dev/null; then
    say "making $VENV with ansible-core"
    python3 -m venv "$VENV"
    "$VENV/bin/python3" -m pip install --quiet --disable-pip-version-check \
        pyinfra ansible-core setuptools wheel
fi

# --- clean-up -------------------------------------------------------------------

work=
pids=()
created_user=0
keys_file=
key_marker="ferry-fleet-bench-$$"
saved_passwd=
made_run_sshd=0

cleanup() {
    local status=$?
    set +e
    if [[ -n $work ]]; then
        # ControlPersist masters of the ssh runs, each by its socket.
        for sock in "$work"/cp-*/*; do
            [[ -S $sock ]] && ssh -o ControlPath="$sock" -O exit 127.0.0.1 2>/dev/null
        done
    fi
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
    if [[ -n $keys_file && -f $keys_file ]]; then
        grep -v -F "$key_marker" "$keys_file" >"$keys_file.bench-tmp"
        cat "$keys_file.bench-tmp" >"$keys_file"
        rm -f "$keys_file.bench-tmp"
    fi
    [[ -n $saved_passwd ]] && usermod -p "$saved_passwd" "$BENCH_USER"
    if [[ $REMOVE_USER == 1 && $created_user == 1 ]]; then
        userdel -r "$BENCH_USER" 2>/dev/null && say "removed user $BENCH_USER"
    fi
    [[ $made_run_sshd == 1 ]] && rmdir /run/sshd 2>/dev/null
    [[ -n $work ]] && rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the bench user ---------------------------------------------------------------

if ! id -u "$BENCH_USER" >/dev/null 2>&1; then
    useradd -m -s /bin/sh "$BENCH_USER"
    created_user=1
    say "created user $BENCH_USER (left in place afterwards unless REMOVE_USER=1)"
fi
user_home=$(getent passwd "$BENCH_USER" | cut -d: -f6)
user_group=$(id -gn "$BENCH_USER")
[[ $(id -u "$BENCH_USER") != 0 ]] || die "BENCH_USER must not be root"
[[ -d $user_home ]] || die "$BENCH_USER has no home directory ($user_home)"
shadow_pw=$(getent shadow "$BENCH_USER" | cut -d: -f2)
if [[ $shadow_pw == '!'* ]]; then # sshd without PAM refuses a locked account
    [[ $created_user == 1 ]] || saved_passwd=$shadow_pw
    usermod -p '*' "$BENCH_USER"
fi

work=$(mktemp -d /tmp/ferry-fleetbench.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/bin" "$work/ssh" "$work/log" "$work/play"
chmod 700 "$work/ssh"
install -m 755 "$FERRY" "$work/bin/ferry"
as_user=(setpriv --reuid="$BENCH_USER" --regid="$BENCH_USER" --init-groups --reset-env)

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_listening() { # FILE PID: prints the address of the first listening line
    local file=$1 pid=$2 addr
    for _ in $(seq 1 200); do
        addr=$(awk '/^listening/ {print $2; exit}' "$file" 2>/dev/null)
        [[ -n $addr ]] && { printf '%s\n' "$addr"; return 0; }
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# --- the package ------------------------------------------------------------------

cp -r "$REPO/clients/python" "$work/source"
"$VENV/bin/python3" -m pip install --quiet --disable-pip-version-check --no-deps \
    --no-build-isolation --no-index --target "$work/package" "$work/source" >&2 ||
    die "pip install ./clients/python failed"
export PYTHONPATH=$work/package

# --- four sshd and four ferry serve -----------------------------------------------

ssh-keygen -q -t ed25519 -N '' -C "ferry-fleet-bench host" -f "$work/ssh/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C "$key_marker" -f "$work/ssh/id_ed25519"
install -d -m 700 -o "$BENCH_USER" -g "$user_group" "$user_home/.ssh"
keys_file=$user_home/.ssh/authorized_keys
[[ -e $keys_file ]] || install -m 600 -o "$BENCH_USER" -g "$user_group" /dev/null "$keys_file"
cat "$work/ssh/id_ed25519.pub" >>"$keys_file"
if [[ ! -d /run/sshd ]]; then
    mkdir -p /run/sshd
    made_run_sshd=1
fi

inventory_ssh="[fleet]"
inventory_ferry="[fleet]"
for i in $(seq 1 "$SERVERS"); do
    port=$(free_port)
    cat >"$work/ssh/sshd_config$i" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $work/ssh/host_ed25519
PidFile $work/ssh/sshd$i.pid
UsePAM no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $BENCH_USER
UseDNS no
PrintMotd no
PrintLastLog no
MaxSessions 64
MaxStartups 64
EOF
    "$SSHD" -D -f "$work/ssh/sshd_config$i" -E "$work/log/sshd$i.log" &
    pids+=($!)
    install -d -m 700 -o "$BENCH_USER" -g "$user_group" "$work/srv$i" "$work/srv$i/root" \
        "$work/sshroot$i"
    "${as_user[@]}" "$work/bin/ferry" serve --allow-exec --no-udp-time --listen 127.0.0.1:0 \
        --root "$work/srv$i/root" --state "$work/srv$i/state" \
        >"$work/log/ferry$i.out" 2>"$work/log/ferry$i.err" &
    pids+=($!)
    addr=$(wait_listening "$work/log/ferry$i.out" "${pids[-1]}") ||
        die "ferry serve did not start: $(cat "$work/log/ferry$i.err")"
    fingerprint=$(awk '/^fingerprint/ {print $2; exit}' "$work/log/ferry$i.out")
    install -m 600 "$work/srv$i/state/token" "$work/play/ferry$i.token"
    inventory_ssh+=$'\n'"ssh$i ansible_host=127.0.0.1 ansible_port=$port root=$work/sshroot$i"
    inventory_ferry+=$'\n'"ferry$i ansible_host=${addr%:*} ansible_port=${addr##*:}"
    inventory_ferry+=" ansible_ferry_token_file=$work/play/ferry$i.token"
    inventory_ferry+=" ansible_ferry_fingerprint=$fingerprint root=$work/srv$i/root"
done
for i in $(seq 1 "$SERVERS"); do
    port=$(awk '/^Port/ {print $2}' "$work/ssh/sshd_config$i")
    up=0
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { up=1; break; }
        sleep 0.05
    done
    ((up)) || die "sshd $i did not start: $(cat "$work/log/sshd$i.log")"
done

common="ansible_python_interpreter=/usr/bin/python3"
printf '%s\n[fleet:vars]\n%s\nansible_user=%s\n' "$inventory_ssh" "$common" "$BENCH_USER" \
    >"$work/play/ssh.ini"
printf '%s\n[fleet:vars]\n%s\nansible_connection=ferry.fleet.ferry\n' "$inventory_ferry" \
    "$common" >"$work/play/ferry.ini"

# --- the playbook: 20 tasks -------------------------------------------------------

head -c 100000 /dev/urandom >"$work/play/data.bin"
printf 'hello {{ inventory_hostname }}\n' >"$work/play/motd.j2"
cat >"$work/play/play.yml" <<'EOF'
- hosts: fleet
  gather_facts: false
  tasks:
    - file: {path: "{{ root }}/app", state: directory, mode: "0755"}
    - copy: {content: "[app]\nport = 8080\n", dest: "{{ root }}/app/config.ini"}
    - copy: {src: data.bin, dest: "{{ root }}/app/data.bin", mode: "0644"}
    - template: {src: motd.j2, dest: "{{ root }}/app/motd"}
    - command: uname -a
    - shell: "ls -l {{ root }}/app | wc -l"
    - stat: {path: "{{ root }}/app/config.ini"}
    - lineinfile: {path: "{{ root }}/app/config.ini", line: "workers = 4"}
    - file: {path: "{{ root }}/app/stamp", state: touch}
    - command: "cat {{ root }}/app/config.ini"
    - fetch: {src: "{{ root }}/app/config.ini", dest: "{{ out }}/{{ inventory_hostname }}.ini", flat: true}
    - raw: echo raw
    - file: {path: "{{ root }}/app/data.bin", mode: "0600"}
    - copy: {src: "{{ root }}/app/data.bin", dest: "{{ root }}/app/data2.bin", remote_src: true}
    - shell: "sha256sum {{ root }}/app/data.bin"
    - command: "false"
      register: failing
      failed_when: failing.rc != 1
    - file: {path: "{{ root }}/app/sub", state: directory}
    - copy: {content: "x\n", dest: "{{ root }}/app/sub/x"}
    - find: {paths: "{{ root }}/app"}
    - file: {path: "{{ root }}/app/sub", state: absent}
EOF

# --- runs ---------------------------------------------------------------------------

export ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0
export ANSIBLE_LOCAL_TEMP=$work/ansible-local ANSIBLE_FORKS=$SERVERS
ssh_common="-o IdentityFile=$work/ssh/id_ed25519 -o IdentitiesOnly=yes"
ssh_common+=" -o UserKnownHostsFile=$work/ssh/known_hosts -o GlobalKnownHostsFile=/dev/null"

# Runs one playbook for CONTENDER; prints its wall time in seconds.
run_once() {
    local contender=$1 n=$2 inventory=ssh.ini
    local env=(env "ANSIBLE_SSH_COMMON_ARGS=$ssh_common")
    case $contender in
    ssh-default) env+=("ANSIBLE_SSH_CONTROL_PATH_DIR=$work/cp-$n") ;;
    ssh-no-persist) env+=("ANSIBLE_SSH_ARGS=-C -o ControlMaster=no") ;;
    ssh-pipelining) env+=("ANSIBLE_SSH_CONTROL_PATH_DIR=$work/cp-p$n" ANSIBLE_PIPELINING=True) ;;
    ferry) inventory=ferry.ini ;;
    esac
    mkdir -p "$work/out-$contender-$n"
    local start end
    start=$(date +%s.%N)
    (cd "$work/play" && "${env[@]}" "$VENV/bin/ansible-playbook" -i "$inventory" \
        -e "out=$work/out-$contender-$n" play.yml >"$work/log/$contender-$n.log" 2>&1) ||
        die "$contender run $n failed: $(tail -30 "$work/log/$contender-$n.log")"
    end=$(date +%s.%N)
    grep -q "failed=0" "$work/log/$contender-$n.log" || die "$contender run $n had failures"
    python3 -c "print(f'{$end - $start:.2f}')"
}

read -r -a contenders <<<"${CONTENDERS:-ssh-default ssh-no-persist ssh-pipelining ferry}"
for c in "${contenders[@]}"; do
    [[ $c =~ ^(ssh-default|ssh-no-persist|ssh-pipelining|ferry)$ ]] || die "unknown contender '$c'"
done
declare -A times
say "warm-up: one run each (not timed)"
for c in "${contenders[@]}"; do run_once "$c" 0 >/dev/null; done
for n in $(seq 1 "$RUNS"); do
    for c in "${contenders[@]}"; do
        t=$(run_once "$c" "$n")
        times[$c]+="$t "
        say "run $n: $c ${t}s"
    done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A med
for c in "${contenders[@]}"; do med[$c]=$(median <<<"${times[$c]}"); done

printf '\n20 tasks x %d servers on 127.0.0.1, ansible-core %s, median of %d runs (s)\n' \
    "$SERVERS" "$("$VENV/bin/python3" -c 'import ansible.release as r; print(r.__version__)')" "$RUNS"
printf '%-34s %8s   %s\n' "transport" "wall" "runs"
declare -A label=([ssh-default]="ssh, Ansible's defaults" [ssh-no-persist]="ssh, ControlPersist off"
    [ssh-pipelining]="ssh, defaults + pipelining" [ferry]="ferry (ferry.fleet.ferry)")
for c in "${contenders[@]}"; do
    printf '%-34s %8s   %s\n' "${label[$c]}" "${med[$c]}" "${times[$c]}"
done
printf 'load average at the end: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"

status=0
python3 - "${med[ferry]:-}" "${med[ssh-default]:-}" "${med[ssh-no-persist]:-}" <<'EOF' || status=1
import sys
ferry, default, no_persist = (float(v) if v else None for v in sys.argv[1:])
ok = True
if ferry is not None and default is not None:
    met = ferry < default
    ok &= met
    print("goal: ferry < ssh defaults: %.2f < %.2f: %s" % (ferry, default, "met" if met else "MISSED"))
if ferry is not None and no_persist is not None:
    met = ferry <= 0.5 * no_persist
    ok &= met
    print("goal: ferry <= 0.5 x ssh without ControlPersist: %.2f <= %.2f: %s"
          % (ferry, 0.5 * no_persist, "met" if met else "MISSED"))
sys.exit(0 if ok else 1)
EOF
exit "$status"
