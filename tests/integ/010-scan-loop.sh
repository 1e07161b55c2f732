#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Change detection on a real loop device: write known changes with dd, scan, and
# compare the set of changed blocks the scan reports with the truth.
#
#   $TMP/src.img (64 MiB, mixed content) --losetup --direct-io=on--> /dev/loopN
#        ^ dd writes at known 4 KiB offsets             pvrepl scan / test-tool
#                                                        state: $TMP/state (map, map.log)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
trap cleanup_common EXIT

BS=65536
img=$TMP/src.img
# 64 MiB: 16 MiB random, 16 MiB zeros, 16 MiB text, 16 MiB random.
{
	head -c 16M /dev/urandom
	head -c 16M /dev/zero
	(yes "the quick brown fox jumps over the lazy standby $$" || true) | head -c 16M
	head -c 16M /dev/urandom
} >"$img"
loop_attach dev "$img"
state=$TMP/state

# 1. First scan without a map: every block is changed; zero blocks are markers.
"$PVREPL" scan --device "$dev" --state-dir "$state" --block-size 64k -o json >"$TMP/s1.json"
[ "$(json_get blocks_scanned <"$TMP/s1.json")" = 1024 ] || fail "blocks_scanned != 1024"
[ "$(json_get blocks_changed <"$TMP/s1.json")" = 1024 ] || fail "first scan: all blocks changed"
[ "$(json_get blocks_zero <"$TMP/s1.json")" = 256 ] || fail "first scan: 256 zero blocks"
[ "$(json_get payload_bytes <"$TMP/s1.json")" = $((768 * BS)) ] || fail "payload bytes"
comp=$(json_get compressed_bytes <"$TMP/s1.json")
[ "$comp" -lt $((768 * BS)) ] || fail "text did not compress ($comp)"
[ ! -e "$state/map" ] || fail "scan without --update wrote a map"

# 2. Record the map, then a rescan finds nothing.
"$PVREPL" scan --device "$dev" --state-dir "$state" --block-size 64k --update -o json >/dev/null
[ -s "$state/map" ] || fail "--update did not write the map"
"$PVREPL" scan --device "$dev" --state-dir "$state" -o json >"$TMP/s2.json"
[ "$(json_get blocks_changed <"$TMP/s2.json")" = 0 ] || fail "no-change rescan found changes"

# 3. Known changes: 4 KiB writes at chosen offsets (some in the same 64 KiB block,
#    one zeroing a whole block, one on the last block), through the loop device.
truth=$TMP/truth
: >"$truth"
for k in 3 5 6 100 101 555 1023; do
	# block k gets a random 4 KiB at offset k*64KiB + 8KiB
	dd if=/dev/urandom of="$dev" bs=4096 seek=$((k * 16 + 2)) count=1 oflag=direct conv=notrunc status=none
	echo "$k data" >>"$truth"
done
dd if=/dev/urandom of="$dev" bs=4096 seek=$((5 * 16 + 15)) count=1 oflag=direct conv=notrunc status=none
dd if=/dev/zero of="$dev" bs=65536 seek=700 count=1 oflag=direct conv=notrunc status=none
echo "700 zero" >>"$truth"
sort -n "$truth" >"$truth.sorted"

"$TEST_TOOL" changed-blocks --device "$dev" --state-dir "$state" >"$TMP/runs"
# expand "FIRST COUNT kind" runs to one line per block
awk '{for (i = 0; i < $2; i++) print $1 + i, $3}' "$TMP/runs" | sort -n >"$TMP/found"
diff -u "$truth.sorted" "$TMP/found" || fail "changed set differs from the truth"

# 4. The CLI agrees, and --update records epoch 2; then nothing is left.
"$PVREPL" scan --device "$dev" --state-dir "$state" --update -o json >"$TMP/s3.json"
[ "$(json_get blocks_changed <"$TMP/s3.json")" = 8 ] || fail "scan CLI count != 8"
[ "$(json_get blocks_zero <"$TMP/s3.json")" = 1 ] || fail "scan CLI zero != 1"
[ "$(json_get epoch <"$TMP/s3.json")" = 2 ] || fail "epoch != 2"
"$PVREPL" scan --device "$dev" --state-dir "$state" -o json >"$TMP/s4.json"
[ "$(json_get blocks_changed <"$TMP/s4.json")" = 0 ] || fail "changes left after --update"
echo "ok: scan found exactly the 8 changed blocks"
