#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `pvrepl bench` on loop devices of known content: the sampled zero share and lz4
# ratio match what was written, the projections follow from the measurements,
# rates parse in bytes and bits, no device byte changes (one device is attached
# read-only), nothing is written to the working directory, and bad input gives
# the documented exit code with a message naming the device or option.
#
#   $TMP/random.img (64 MiB urandom) --losetup --read-only --> /dev/loopR
#   $TMP/text.img   (64 MiB of `yes` text) --losetup -------> /dev/loopT
#   $TMP/half.img   (256 MiB: 1 MiB zeros, 1 MiB random, ...) -> /dev/loopH
#                                        pvrepl bench -o json (cwd: $TMP/cwd, empty)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
trap cleanup_common EXIT

# jcheck FILE EXPR: python EXPR over j (the JSON in FILE) must be true.
jcheck() {
	python3 - "$1" "$2" <<'EOF' || fail "$1: $2 does not hold ($(cat "$1"))"
import json, sys
j = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)
EOF
}

head -c 64M /dev/urandom >"$TMP/random.img"
(yes "the quick brown fox jumps over the lazy standby $$" || true) | head -c 64M >"$TMP/text.img"
for _ in $(seq 1 128); do
	head -c 1M /dev/zero
	head -c 1M /dev/urandom
done >"$TMP/half.img"

# Read-only attachment: a bench that tried to open for writing would fail here.
rdev=$(losetup --find --show --direct-io=on --read-only "$TMP/random.img") ||
	skip "losetup failed (no loop devices?)"
LOOPS+=("$rdev")
tdev="" hdev="" # set by loop_attach
loop_attach tdev "$TMP/text.img"
loop_attach hdev "$TMP/half.img"
sha_r=$(dev_sha "$rdev") sha_t=$(dev_sha "$tdev") sha_h=$(dev_sha "$hdev")

mkdir "$TMP/cwd"
cd "$TMP/cwd"
bench() { "$PVREPL" bench --progress none "$@"; }

# 1. Random data: no zero blocks, lz4 keeps nothing (ratio 1), nothing to decode.
bench --device "$rdev" --sample 16M -o json >"$TMP/r.json"
for f in device size_bytes block_size workers scan_bytes scan_seconds scan_bytes_per_second \
	scan_cpu_seconds cpu_seconds_per_gib_scanned scan_complete scan_stopped full_scan_seconds \
	sample_bytes sample_blocks sample_zero_blocks zero_fraction compression_ratio \
	hash_bytes_per_second compress_bytes_per_second decompress_bytes_per_second \
	cpu_seconds_per_gib_sent link_bytes_per_second change_bytes_per_second interval_seconds \
	initial_sync_bytes initial_sync_seconds initial_sync_bytes_per_second initial_sync_bound \
	initial_sync_cpu_seconds epoch_keeps_up epoch_seconds epoch_period_seconds \
	epoch_changed_bytes epoch_sent_bytes rpo_seconds epoch_cpu_seconds epoch_cpus_busy \
	max_change_bytes_per_second; do
	jcheck "$TMP/r.json" "'$f' in j"
done
jcheck "$TMP/r.json" "j['device'] == '$rdev' and j['size_bytes'] == 64 << 20"
jcheck "$TMP/r.json" "j['block_size'] == 16384 and j['workers'] >= 1"
jcheck "$TMP/r.json" "j['scan_complete'] and not j['scan_stopped'] and j['scan_bytes'] == 64 << 20"
jcheck "$TMP/r.json" "j['scan_seconds'] > 0 and j['scan_bytes_per_second'] > 0"
jcheck "$TMP/r.json" "j['sample_bytes'] == 16 << 20 and j['sample_blocks'] == 1024"
jcheck "$TMP/r.json" "j['sample_zero_blocks'] == 0 and j['zero_fraction'] == 0"
jcheck "$TMP/r.json" "0.99 <= j['compression_ratio'] <= 1.01"
jcheck "$TMP/r.json" "j['hash_bytes_per_second'] > 0 and j['compress_bytes_per_second'] > 0"
jcheck "$TMP/r.json" "j['decompress_bytes_per_second'] is None"
jcheck "$TMP/r.json" "j['initial_sync_bound'] in ('scan', 'link', 'cpu')"
# The model: bytes sent = size x (1 - zero share) / ratio; time = size / rate;
# defaults 1 Gbit, 1 MiB/s, 30 s; RPO = period + epoch time.
jcheck "$TMP/r.json" "abs(j['initial_sync_bytes'] - j['size_bytes'] * (1 - j['zero_fraction']) / j['compression_ratio']) <= 1"
jcheck "$TMP/r.json" "abs(j['initial_sync_seconds'] * j['initial_sync_bytes_per_second'] - j['size_bytes']) < 1e-6 * j['size_bytes']"
jcheck "$TMP/r.json" "j['initial_sync_bytes_per_second'] <= j['scan_bytes_per_second'] * 1.000001"
jcheck "$TMP/r.json" "j['link_bytes_per_second'] == 125e6 and j['change_bytes_per_second'] == 1 << 20"
jcheck "$TMP/r.json" "j['interval_seconds'] == 30 and j['epoch_keeps_up'] and j['epoch_period_seconds'] == 30"
jcheck "$TMP/r.json" "j['epoch_changed_bytes'] == 30 << 20"
jcheck "$TMP/r.json" "abs(j['rpo_seconds'] - j['epoch_period_seconds'] - j['epoch_seconds']) < 1e-6"
jcheck "$TMP/r.json" "j['epoch_seconds'] >= j['full_scan_seconds']"

# 2. Text: lz4 shrinks it a lot; decoding is measured.
bench --device "$tdev" --sample 8M --block-size 64k -o json >"$TMP/t.json"
jcheck "$TMP/t.json" "j['block_size'] == 65536 and j['sample_blocks'] == 128"
jcheck "$TMP/t.json" "j['compression_ratio'] > 2 and j['zero_fraction'] == 0"
jcheck "$TMP/t.json" "j['decompress_bytes_per_second'] > 0"

# 3. Half zeros, 1 MiB at a time: samples spread evenly see half zero blocks;
#    the other half is random, so the initial sync sends half the device.
bench --device "$hdev" --sample 32M --link-rate 100Mbit --change-rate 5M --interval 1m \
	-o json >"$TMP/h.json"
jcheck "$TMP/h.json" "0.45 <= j['zero_fraction'] <= 0.55"
jcheck "$TMP/h.json" "abs(j['initial_sync_bytes'] / j['size_bytes'] - 0.5) < 0.06"
jcheck "$TMP/h.json" "j['link_bytes_per_second'] == 12.5e6 and j['change_bytes_per_second'] == 5 << 20"
# 5 MiB/s for 60 s is more than the device: every block changes, all are resent.
jcheck "$TMP/h.json" "j['interval_seconds'] == 60 and j['epoch_period_seconds'] == 60"
jcheck "$TMP/h.json" "j['epoch_changed_bytes'] == j['size_bytes'] and j['epoch_keeps_up']"
jcheck "$TMP/h.json" "abs(j['epoch_seconds'] - j['full_scan_seconds'] - j['size_bytes'] / 12.5e6) < 1e-6"

# 3b. All zero (an image file): nothing to time, so the rates are null, not 0/0.
head -c 4M /dev/zero >"$TMP/zero.img"
bench --device "$TMP/zero.img" -o json >"$TMP/z.json"
jcheck "$TMP/z.json" "j['zero_fraction'] == 1 and j['initial_sync_bytes'] == 0"
jcheck "$TMP/z.json" "j['hash_bytes_per_second'] is None and j['compress_bytes_per_second'] is None"
jcheck "$TMP/z.json" "j['compression_ratio'] == 1 and j['initial_sync_bound'] == 'scan'"

# 4. Rates in bytes and bits; with a change rate the link cannot carry, epochs
#    grow until each resends the whole device.
bench --device "$tdev" --sample 1M --duration 1s --link-rate 100M -o json >"$TMP/b.json"
jcheck "$TMP/b.json" "j['link_bytes_per_second'] == 100 << 20"
bench --device "$tdev" --sample 1M --duration 1s --link-rate 2.5Gbit -o json >"$TMP/b.json"
jcheck "$TMP/b.json" "j['link_bytes_per_second'] == 312.5e6"
bench --device "$rdev" --sample 1M --duration 1s --link-rate 8Mbps --change-rate 10M \
	-o json >"$TMP/slow.json"
jcheck "$TMP/slow.json" "j['link_bytes_per_second'] == 1e6 and not j['epoch_keeps_up']"
jcheck "$TMP/slow.json" "j['epoch_changed_bytes'] == j['size_bytes'] and j['epoch_period_seconds'] == j['epoch_seconds'] > 60"
jcheck "$TMP/slow.json" "abs(j['rpo_seconds'] - 2 * j['epoch_seconds']) < 1e-6"

# 5. A short --duration: whether it stopped or finished, the report agrees with itself.
bench --device "$hdev" --sample 1M --duration 100ms --block-size 4k -o json >"$TMP/d.json"
jcheck "$TMP/d.json" "j['scan_complete'] != j['scan_stopped']"
jcheck "$TMP/d.json" "j['scan_complete'] or (j['scan_bytes'] < j['size_bytes'] and j['full_scan_seconds'] > j['scan_seconds'])"

# 6. Text output: the table and the notes.
bench --device "$hdev" --sample 4M >"$TMP/text.out"
grep -q '^Initial sync: limited by: ' "$TMP/text.out" || fail "text output lacks the initial sync"
grep -q '^Epoch: expected RPO' "$TMP/text.out" || fail "text output lacks the RPO"
grep -q 'TLS encryption and framing are not counted' "$TMP/text.out" || fail "text lacks the notes"
"$PVREPL" bench --help | grep -q 'RPO' || fail "--help does not explain the model"

# 7. Errors: exit code and a message naming the device or the option.
expect_err() { # CODE PATTERN ARGS...
	local code=$1 pat=$2 rc=0
	shift 2
	"$PVREPL" bench --progress none "$@" >"$TMP/err.out" 2>"$TMP/err.txt" || rc=$?
	[ "$rc" -eq "$code" ] || fail "bench $*: exit $rc, expected $code ($(cat "$TMP/err.txt"))"
	grep -qF -- "$pat" "$TMP/err.txt" || fail "bench $*: message lacks '$pat': $(cat "$TMP/err.txt")"
	[ ! -s "$TMP/err.out" ] || fail "bench $*: printed a result on failure"
}
expect_err 66 "$TMP/missing.img" --device "$TMP/missing.img"
expect_err 2 "needs --device" -o json
head -c 512K /dev/urandom >"$TMP/small.img"
expect_err 78 "$TMP/small.img is only 512.00 KiB" --device "$TMP/small.img"
expect_err 2 "--link-rate fast" --device "$rdev" --link-rate fast
expect_err 2 "--link-rate 0" --device "$rdev" --link-rate 0
expect_err 2 "--link-rate 10Xbit" --device "$rdev" --link-rate 10Xbit
expect_err 2 "--change-rate -5M" --device "$rdev" --change-rate -5M
expect_err 2 "--duration 0" --device "$rdev" --duration 0
expect_err 2 "--duration soon" --device "$rdev" --duration soon
expect_err 2 "--interval 0" --device "$rdev" --interval 0
expect_err 2 "--block-size 3000" --device "$rdev" --block-size 3000
expect_err 2 "--sample 4k" --device "$rdev" --sample 4k
expect_err 2 "--output yaml" --device "$rdev" -o yaml
expect_err 2 "unexpected argument 'extra'" --device "$rdev" extra

# 8. Read-only: every device is byte for byte what it was; nothing was written here.
[ "$(dev_sha "$rdev")" = "$sha_r" ] || fail "bench changed $rdev"
[ "$(dev_sha "$tdev")" = "$sha_t" ] || fail "bench changed $tdev"
[ "$(dev_sha "$hdev")" = "$sha_h" ] || fail "bench changed $hdev"
[ -z "$(ls -A "$TMP/cwd")" ] || fail "bench wrote into the working directory: $(ls -A "$TMP/cwd")"
cd /
echo "ok: bench measured zero share, lz4 ratio and projections; devices unchanged"
