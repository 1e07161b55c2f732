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

cleanup_common() {
	local p l
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done
	rm -rf "$TMP"
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
