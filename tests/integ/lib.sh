# SPDX-License-Identifier: Apache-2.0
# Shared helpers for the numbered integration tests. Source it after `set -euo pipefail`.
# Every test: names suffixed with $$, `trap cleanup EXIT`, cleanup by recorded
# loop device / PID / path, never by name pattern.

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
need_root() { [ "$(id -u)" -eq 0 ] || skip "needs root (loop devices)"; }

: "${PVREPL:?run through tests/run.sh or set PVREPL}"
: "${TEST_TOOL:?run through tests/run.sh or set TEST_TOOL}"

TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/pvrepl-test-$$-XXXXXX")
LOOPS=()
PIDS=()
NETNS=()
MOUNTS=()
# Every test pins its write trackers in a bpffs of its own, mounted in $TMP
# (senders read PVREPL_TRACK_PIN_DIR) and unmounted at the end, which detaches
# every program it holds: no BPF program outlives a test. Not under /sys: `ip
# netns exec` mounts a fresh sysfs, where a tracker would not outlive its sender.
if [ "$(id -u)" -eq 0 ] && mkdir "$TMP/bpffs" && mount -t bpf -o mode=0700 bpf "$TMP/bpffs"; then
	MOUNTS+=("$TMP/bpffs")
	export PVREPL_TRACK_PIN_DIR="$TMP/bpffs"
else
	export PVREPL_TRACK_PIN_DIR="/sys/fs/bpf/pvrepl-test-$$"
fi

cleanup_common() {
	local p l n i
	set +e # clean up everything even if one step fails
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	# Bounded: a process that ignores SIGTERM for 5 s gets SIGKILL.
	for ((i = 0; i < 50; i++)); do
		n=0
		for p in "${PIDS[@]}"; do pid_alive "$p" && n=$((n + 1)); done
		[ "$n" -eq 0 ] && break
		sleep 0.1
	done
	for p in "${PIDS[@]}"; do pid_alive "$p" && kill -KILL "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	# A process just killed may hold a mount for a moment (the kernel drops an
	# io_uring's files after the process is gone): bounded retries.
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
		for ((n = 0; n < 30; n++)); do
			mountpoint -q "${MOUNTS[i]}" 2>/dev/null || break
			umount "${MOUNTS[i]}" 2>/dev/null && break
			sleep 0.1
		done
	done
	for n in "${NETNS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
	for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done
	[[ $PVREPL_TRACK_PIN_DIR == /sys/fs/bpf/* ]] && rm -rf "$PVREPL_TRACK_PIN_DIR"
	rm -rf "$TMP"
}

# pid_alive PID: the process exists and is not a zombie waiting to be reaped.
pid_alive() {
	local _st
	[ -r "/proc/$1/stat" ] || return 1
	_st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[ -n "$_st" ] && [ "$_st" != Z ]
}

# pid_forget PID: drops PID from the cleanup list (once it has been reaped).
pid_forget() {
	local _p _keep=()
	for _p in "${PIDS[@]}"; do [ "$_p" = "$1" ] || _keep+=("$_p"); done
	PIDS=("${_keep[@]}")
}

# wait_pid PID SECONDS VAR: reaps PID, a background child of this shell, within
# SECONDS and stores its exit code in VAR; kills it and fails the test if it runs
# longer.
wait_pid() {
	local _p=$1 _i _rc=0
	for ((_i = 0; _i < $2 * 10; _i++)); do pid_alive "$_p" || break; sleep 0.1; done
	if pid_alive "$_p"; then
		kill -KILL "$_p" 2>/dev/null || true
		wait "$_p" 2>/dev/null || true
		pid_forget "$_p"
		fail "process $_p did not finish within $2 s"
	fi
	wait "$_p" || _rc=$?
	pid_forget "$_p"
	printf -v "$3" '%s' "$_rc"
}

# kill9 PID: SIGKILL a background child of this shell and reap it.
kill9() {
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	pid_forget "$1"
}

# netns_pair N: namespaces pvr-a-$$ and pvr-b-$$ joined by a veth pair, vethA in A
# with 10.231.N.1/30 and vethB in B with 10.231.N.2/30, lo up in each. Sets NS_A,
# NS_B, ADDR_A, ADDR_B. Addresses exist only inside these namespaces.
netns_pair() {
	command -v ip >/dev/null || skip "needs iproute2 (ip)"
	NS_A=pvr-a-$$ NS_B=pvr-b-$$ ADDR_A=10.231.$1.1 ADDR_B=10.231.$1.2
	ip netns add "$NS_A" || skip "cannot create network namespaces"
	NETNS+=("$NS_A")
	ip netns add "$NS_B"
	NETNS+=("$NS_B")
	ip link add vethA netns "$NS_A" type veth peer name vethB netns "$NS_B"
	ip -n "$NS_A" addr add "$ADDR_A/30" dev vethA
	ip -n "$NS_B" addr add "$ADDR_B/30" dev vethB
	ip -n "$NS_A" link set lo up
	ip -n "$NS_B" link set lo up
	ip -n "$NS_A" link set vethA up
	ip -n "$NS_B" link set vethB up
}

# certs_make DIR: a CA in DIR/ca and certificates signed by it for the receiver
# ('standby', in DIR/standby) and the sender ('primary', in DIR/primary).
certs_make() {
	"$PVREPL" certs ca --out "$1/ca" >/dev/null
	"$PVREPL" certs issue --ca "$1/ca" --name standby --out "$1/standby" >/dev/null
	"$PVREPL" certs issue --ca "$1/ca" --name primary --out "$1/primary" >/dev/null
}

# receiver_spawn VAR NS LOG READY ARGS...: starts `pvrepl receive ARGS
# --ready-file READY` in namespace NS ("-": this one) in the background, its
# output appended to LOG; stores its PID in VAR (ip netns exec execs, so the PID
# is the receiver's own).
receiver_spawn() {
	local _var=$1 _ns=$2 _log=$3 _ready=$4
	shift 4
	rm -f "$_ready"
	if [ "$_ns" = - ]; then
		"$PVREPL" receive "$@" --ready-file "$_ready" >>"$_log" 2>&1 &
	else
		ip netns exec "$_ns" "$PVREPL" receive "$@" --ready-file "$_ready" >>"$_log" 2>&1 &
	fi
	PIDS+=("$!")
	printf -v "$_var" '%s' "$!"
}

# receiver_wait PID READY LOG: waits (15 s at most) until the receiver listens
# (recovery done) and sets RX_ADDR to the address it bound.
receiver_wait() {
	local _i
	for ((_i = 0; _i < 150; _i++)); do
		[ -s "$2" ] && break
		pid_alive "$1" || { tail -n 20 "$3" >&2; fail "the receiver (pid $1) exited at start"; }
		sleep 0.1
	done
	[ -s "$2" ] || { tail -n 20 "$3" >&2; fail "the receiver did not listen within 15 s"; }
	RX_ADDR=$(cat "$2")
}

# dev_sha DEV: sha256 of a device or file, read with O_DIRECT (no stale cache).
dev_sha() { dd if="$1" bs=4M iflag=direct status=none | sha256sum | cut -d' ' -f1; }

# dev_cmp A B: byte comparison of two devices read with O_DIRECT.
dev_cmp() {
	cmp <(dd if="$1" bs=4M iflag=direct status=none) <(dd if="$2" bs=4M iflag=direct status=none)
}

# loop_attach VAR FILE [SECTOR_SIZE]: attaches FILE with direct I/O on and stores
# the device in VAR (not via $(...): the cleanup list must live in this shell).
loop_attach() {
	local _loopdev
	_loopdev=$(losetup --find --show --direct-io=on ${3:+--sector-size "$3"} "$2") ||
		skip "losetup failed on $2 (no loop devices?)"
	LOOPS+=("$_loopdev")
	printf -v "$1" '%s' "$_loopdev"
}

# json_get FIELD < json  (python3 is on every Debian 12 machine with the tools we use)
json_get() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# wait_applied STATE_DIR/VOLUME EPOCH: the receiver acks an epoch once it is
# durable in its journal and applies it to the standby right after; compare
# images only after this (bounded: 10 s).
wait_applied() { "$TEST_TOOL" wait-applied --state-dir "$1" --epoch "$2" >/dev/null; }
