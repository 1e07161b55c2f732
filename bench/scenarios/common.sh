# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# Sourced by the change-detection scenarios (20-scan, 21-blocksize, 22-mapmem):
# the run.sh contract's environment, skip/die, a scratch directory removed on
# exit, the cache drop, the shared mixed image and the machine description. Set NAME before sourcing.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$REPO/bench/plot.sh"
BUILD=${BUILD:-build}
PVREPL=${PVREPL:-$REPO/$BUILD/pvrepl}
TEST_TOOL=${TEST_TOOL:-$REPO/$BUILD/test-tool}
MIXED_DATA=$REPO/bench/scenarios/mixed-data.py
QUICK=${QUICK:-0}
RUNS=${RUNS:-3}
BENCH_WORK=${BENCH_WORK:-$REPO/bench/work}
RESULTS_DIR=${RESULTS_DIR:-$REPO/bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
RUN_TIMEOUT_S=600 # a hung run is killed, not waited for
RAW=$RESULTS_DIR/$NAME-raw
# Scratch for this run only (state dirs, changed copies, the binaries); removed on
# exit. The shared images live next to it in BENCH_WORK and are kept.
WORK=$BENCH_WORK/$NAME.$$

cleanup() {
	if [ -n "${BENCH_BPFFS:-}" ]; then umount "$BENCH_BPFFS" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT

skip() {
	echo "$NAME: skipped: $*"
	exit 77
}
die() {
	echo "$NAME: $*" >&2
	exit 1
}
say() {
	echo "$NAME: $*" >&2
}

# need_root: the timed scenarios drop the page cache before every run.
need_root() {
	[ "$(id -u)" -eq 0 ] || skip "needs root to drop the page cache (/proc/sys/vm/drop_caches)"
	echo 3 2>/dev/null >/proc/sys/vm/drop_caches ||
		skip "cannot write /proc/sys/vm/drop_caches (read-only /proc/sys?)"
}

need_tools() {
	command -v python3 >/dev/null || skip "python3 is not installed"
	[ -x "$PVREPL" ] || die "$PVREPL not found; build it with 'make'"
	[ -x "$TEST_TOOL" ] || die "$TEST_TOOL not found; build it with 'make'"
	case $RUNS in '' | *[!0-9]* | 0) die "RUNS='$RUNS': want a positive number" ;; esac
	mkdir -p "$BENCH_WORK" "$RAW" "$WORK/bin"
	# Every run of a scenario uses the same binaries, even if the build tree is
	# relinked meanwhile (a linker's half-written output is not executable).
	cp "$PVREPL" "$TEST_TOOL" "$WORK/bin/"
	# Senders pin their write trackers in a bpffs of this run's own, unmounted by
	# cleanup (which detaches them): nothing stays attached to the loop devices.
	if [ -z "${PVREPL_TRACK_PIN_DIR:-}" ] && [ "$(id -u)" -eq 0 ] && mkdir -p "$WORK/bpffs" &&
		mount -t bpf -o mode=0700 bpf "$WORK/bpffs"; then
		BENCH_BPFFS=$WORK/bpffs
		export PVREPL_TRACK_PIN_DIR=$BENCH_BPFFS
	fi
	PVREPL=$WORK/bin/$(basename "$PVREPL")
	TEST_TOOL=$WORK/bin/$(basename "$TEST_TOOL")
	local rc=0
	"$PVREPL" scan --help >/dev/null 2>&1 || rc=$?
	[ "$rc" -eq 0 ] || die "$PVREPL does not run (being rebuilt?); run again"
	"$TEST_TOOL" >/dev/null 2>&1 || rc=$?
	[ "$rc" -eq 2 ] || die "$TEST_TOOL does not run (being rebuilt?); run again"
}

# stop_pid PID: SIGTERM, 10 s, then SIGKILL; by PID, reaped (a child of this shell).
stop_pid() {
	local p=$1 i
	[ -n "$p" ] || return 0
	kill -TERM "$p" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# mixed_image MIB: prints the path of the shared mixed-content image of that size
# in BENCH_WORK, writing it first if it is missing (kept for reuse; the name
# carries the generator's version so a changed generator never reuses old bytes).
mixed_image() {
	local mib=$1 img
	img=$BENCH_WORK/mixed-v1-${mib}m.img
	if [ ! -f "$img" ] || [ "$(stat -c %s "$img")" -ne $((mib << 20)) ]; then
		say "writing a $mib MiB mixed image to $img"
		python3 "$MIXED_DATA" image "$img.tmp.$$" $((mib << 20)) || {
			rm -f "$img.tmp.$$"
			die "cannot write $img"
		}
		mv "$img.tmp.$$" "$img"
	fi
	echo "$img"
}

# scan OUT ARGS...: one `pvrepl scan`, its JSON in OUT. The caller drops caches.
scan() {
	local out=$1
	shift
	timeout --kill-after=10 "$RUN_TIMEOUT_S" \
		"$PVREPL" scan "$@" -o json --progress none >"$out" ||
		die "pvrepl scan $* failed (see the message above)"
}

# Exports the machine's description as MACHINE_* for the report generators.
machine_env() {
	local mem_kib
	mem_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
	MACHINE_NPROC=$(nproc)
	MACHINE_MEM_GIB=$(awk -v k="$mem_kib" 'BEGIN { printf "%.1f", k / 1048576 }')
	MACHINE_KERNEL=$(uname -r)
	MACHINE_CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	MACHINE_FS=$(findmnt -n -o FSTYPE,SOURCE -T "$BENCH_WORK" | tr -s ' ')
	MACHINE_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	export MACHINE_NPROC MACHINE_MEM_GIB MACHINE_KERNEL MACHINE_CPU MACHINE_FS MACHINE_DATE
}

# --- one receiver on loopback, for the replication scenarios -------------------
# They set STANDBY (the standby image) and use RX_PID, RX_LOG and PEER.
RX_PID=
RX_LOG=

# bench_certs: a CA in $WORK/tls/ca and the certificates of 'standby' ($WORK/tls/rx)
# and 'source' ($WORK/tls/tx).
bench_certs() {
	say "making a CA and the certificates of 'source' and 'standby'"
	"$PVREPL" certs ca --out "$WORK/tls/ca" >/dev/null
	"$PVREPL" certs issue --ca "$WORK/tls/ca" --name standby --out "$WORK/tls/rx" >/dev/null
	"$PVREPL" certs issue --ca "$WORK/tls/ca" --name source --out "$WORK/tls/tx" >/dev/null
}

# start_receiver LOG [ARGS...]: `pvrepl receive` of volume vol on $STANDBY, for the
# certificate 'source', on a free loopback port, with ARGS; its output in LOG.
# Sets RX_PID, RX_LOG and PEER (the address it bound) once it listens.
start_receiver() {
	RX_LOG=$1
	shift
	rm -f "$WORK/ready"
	"$PVREPL" receive --listen 127.0.0.1:0 --tls-dir "$WORK/tls/rx" \
		--state-dir "$WORK/rx-state" --volume "vol=$STANDBY" --allow vol=source \
		--ready-file "$WORK/ready" "$@" >"$RX_LOG" 2>&1 &
	RX_PID=$!
	for _ in $(seq 200); do
		[ -s "$WORK/ready" ] && break
		kill -0 "$RX_PID" 2>/dev/null || die "the receiver exited (see $RX_LOG)"
		sleep 0.05
	done
	[ -s "$WORK/ready" ] || die "the receiver is not listening after 10 s (see $RX_LOG)"
	PEER=$(cat "$WORK/ready")
}

# stop_receiver: SIGTERM, 10 s to exit, then SIGKILL; by PID.
stop_receiver() {
	[ -n "$RX_PID" ] || return 0
	kill -TERM "$RX_PID" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$RX_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$RX_PID" 2>/dev/null || true
	wait "$RX_PID" 2>/dev/null || true
	RX_PID=
}

# --- timing around one epoch ---------------------------------------------------
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }
rx_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$RX_PID/stat"; }
CLK_TCK=$(getconf CLK_TCK)

# wait_rx_applied EPOCH: until the receiver's log ($RX_LOG) says EPOCH is applied
# (an incremental one) or complete (a full sync); 120 s at most.
wait_rx_applied() {
	local pattern="epoch=$1 (committed and applied|full sync complete)"
	for _ in $(seq 6000); do
		grep -Eq "$pattern" "$RX_LOG" && return 0
		sleep 0.02
	done
	die "the receiver did not log epoch $1 applied within 120 s (see $RX_LOG)"
}

# outer_json OUT T0 T1 T2 C0 C1: an epoch seen from outside, into OUT: wall
# seconds to the ack (T0..T1) and to applied (T0..T2), the receiver's CPU (ticks
# C0..C1).
outer_json() {
	printf '{"wall_seconds": %s, "applied_seconds": %s, "receiver_cpu_seconds": %s}\n' \
		"$(elapsed "$2" "$3")" "$(elapsed "$2" "$4")" \
		"$(awk -v a="$5" -v b="$6" -v t="$CLK_TCK" 'BEGIN { print (b - a) / t }')" >"$1"
}
