#!/usr/bin/env bash
# suite: fault (also run under ASan + UBSan by make check)
# SPDX-License-Identifier: Apache-2.0
# A lost ack: the receiver committed epoch N but the sender never saw the ack.
# The sender recorded N's changes in map.pending before asking for the ack; on
# its next attempt it must confirm N from that record (Merkle roots agree) and
# send only what changed since — not resync the whole volume. A pending record
# that does not match what the receiver holds, or a damaged one, must fall back
# to a full resync, never to a guess.
#
#   src.img (64 MiB) ──pvrepl send──► 127.0.0.1 ──pvrepl receive──► dst.img
#   sstate/ (map, map.log, map.pending)              rstate/vol/ (map, journal, state)
#
# The lost ack is made deterministic: the sender's state dir is rolled back to
# before epoch N, and test-tool pending-save records exactly what the sender
# had recorded for N (the source is unchanged since).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
trap cleanup_common EXIT

certs_make "$TMP"
head -c 48M /dev/urandom >"$TMP/src.img"
head -c 16M /dev/zero >>"$TMP/src.img"
truncate -s 64M "$TMP/dst.img"
loop_attach src "$TMP/src.img"
loop_attach dst "$TMP/dst.img"
receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" --listen 127.0.0.1:0 \
	--tls-dir "$TMP/standby" --state-dir "$TMP/rstate" --volume "vol=$dst" --allow vol=primary
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"

send() {
	"$PVREPL" send --volume vol --device "$src" --state-dir "$TMP/sstate" --peer "$RX_ADDR" \
		--tls-dir "$TMP/primary" --server-name standby --progress none -o json
}
change() { # change SEED: a few scattered 4 KiB writes
	local i
	for i in 3 70 900 2047; do
		dd if=/dev/urandom of="$src" bs=4096 seek=$(((i * 7 + $1) % 16384)) count=1 \
			oflag=direct conv=notrunc status=none
	done
}

send >"$TMP/e1.json"
[ "$(json_get result <"$TMP/e1.json")" = ok ] || fail "initial sync failed"
wait_applied "$TMP/rstate/vol" 1

# Epoch 2 reaches the receiver; then the sender "forgets" the ack.
cp -a "$TMP/sstate" "$TMP/sstate.before2"
change 1
send >"$TMP/e2.json"
[ "$(json_get epoch <"$TMP/e2.json")" = 2 ] || fail "epoch 2 not sent"
wait_applied "$TMP/rstate/vol" 2
rm -rf "$TMP/sstate" && cp -a "$TMP/sstate.before2" "$TMP/sstate"
"$TEST_TOOL" pending-save --device "$src" --state-dir "$TMP/sstate" --epoch 2

# The next attempt confirms epoch 2 from map.pending and sends epoch 3 as a delta.
change 2
send >"$TMP/e3.json"
[ "$(json_get result <"$TMP/e3.json")" = ok ] || fail "epoch after the lost ack failed"
[ "$(json_get kind <"$TMP/e3.json")" = incremental ] || fail "lost ack caused a full resync"
[ "$(json_get epoch <"$TMP/e3.json")" = 3 ] || fail "expected epoch 3"
grep -q "lost ack was recovered" "$TMP/e3.json" || fail "message does not say the ack was recovered"
[ "$(json_get blocks_sent <"$TMP/e3.json")" -le 4 ] || fail "sent more than the 4 changed blocks"
[ ! -e "$TMP/sstate/map.pending" ] || fail "map.pending left after the ack"
wait_applied "$TMP/rstate/vol" 3
dev_cmp "$src" "$dst" || fail "standby differs after the recovered ack"

# A pending record that is not what the receiver holds: full resync, standby right.
cp -a "$TMP/sstate" "$TMP/sstate.before4"
change 3
send >"$TMP/e4.json"
wait_applied "$TMP/rstate/vol" 4
rm -rf "$TMP/sstate" && cp -a "$TMP/sstate.before4" "$TMP/sstate"
change 4 # the source moved on: the recorded hashes no longer match epoch 4
"$TEST_TOOL" pending-save --device "$src" --state-dir "$TMP/sstate" --epoch 4
send >"$TMP/e5.json"
[ "$(json_get result <"$TMP/e5.json")" = ok ] || fail "epoch after a stale pending failed"
[ "$(json_get kind <"$TMP/e5.json")" = "full sync" ] || fail "a stale pending record was trusted"
wait_applied "$TMP/rstate/vol" "$(json_get epoch <"$TMP/e5.json")"
dev_cmp "$src" "$dst" || fail "standby differs after the resync"

# A damaged pending record is ignored with a full resync, never half-applied.
cp -a "$TMP/sstate" "$TMP/sstate.before6"
change 5
send >"$TMP/e6.json"
e6=$(json_get epoch <"$TMP/e6.json")
wait_applied "$TMP/rstate/vol" "$e6"
rm -rf "$TMP/sstate" && cp -a "$TMP/sstate.before6" "$TMP/sstate"
"$TEST_TOOL" pending-save --device "$src" --state-dir "$TMP/sstate" --epoch "$e6"
printf '\xff' | dd of="$TMP/sstate/map.pending" bs=1 seek=100 conv=notrunc status=none
send >"$TMP/e7.json"
[ "$(json_get kind <"$TMP/e7.json")" = "full sync" ] || fail "a damaged pending record was used"
wait_applied "$TMP/rstate/vol" "$(json_get epoch <"$TMP/e7.json")"
dev_cmp "$src" "$dst" || fail "standby differs after ignoring a damaged record"
echo "ok: lost ack confirmed from map.pending; stale and damaged records fall back to a resync"
