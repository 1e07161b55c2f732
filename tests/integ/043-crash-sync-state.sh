#!/usr/bin/env bash
# suite: fault (also run under ASan + UBSan by make check)
# SPDX-License-Identifier: Apache-2.0
# A first full sync killed mid-way resumes from its cursor (invariant 8), and
# invariant 1 of DESIGN.md holds at every crash point of a full resync: the standby is
# written outside the journal only while its state says `syncing`, and that is
# durable before the first write. A consistent standby (epoch 2) gets a full
# resync (epoch 3: the sender's map is rolled back, so the two sides are not in
# step) of a 144 MiB volume whose every block changed: its state goes
# syncing (1st state replace), advances its cursor at 64 and 128 MiB (2nd, 3rd),
# commits the map (base.*, log.*) and becomes consistent (4th). The receiver
# kills itself with SIGKILL before each step of those replaces in turn
# (test-tool crash-at), is restarted, and must then either say `initial_sync`
# (never Consistent=True) or be consistent at epoch 2 with the old image or at
# epoch 3 with the new one, byte for byte. The next send converges.
#
#   one machine, loopback only
#   ┌───────────────────────────────────────────────────────────────────────┐
#   │ pvrepl send ── mTLS 127.0.0.1:PORT ──► test-tool crash-at STEP N --    │
#   │   state $TMP/sstate (rolled back        receive ◄── SIGKILL at STEP #N │
#   │   to epoch 1 before each point)         then pvrepl receive (restart)  │
#   │ /dev/loopS ($TMP/src.img, 144 MiB)      /dev/loopD ($TMP/dst.img)      │
#   └───────────────────────────────────────────────────────────────────────┘
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
trap cleanup_common EXIT

certs_make "$TMP/certs"
head -c 144M /dev/urandom >"$TMP/src.img"
truncate -s 144M "$TMP/dst.img"
loop_attach src "$TMP/src.img"
loop_attach dst "$TMP/dst.img"

rxlog=$TMP/receiver.log
rx_args=(--listen 127.0.0.1:0 --tls-dir "$TMP/certs/standby" --state-dir "$TMP/rstate"
	--volume "vol=$dst" --allow vol=primary --journal-size 64M)
rx_start() {
	receiver_spawn rx - "$rxlog" "$TMP/ready" "${rx_args[@]}"
	receiver_wait "$rx" "$TMP/ready" "$rxlog"
}
rx_stop() {
	kill "$rx"
	wait_pid "$rx" 10 _rc
}
send() {
	timeout 60 "$PVREPL" send --volume vol --device "$src" --state-dir "$TMP/sstate" \
		--peer "$RX_ADDR" --tls-dir "$TMP/certs/primary" --server-name standby \
		-o json --progress none
}
# crash_send WHAT STEP N: a receiver that SIGKILLs itself the Nth time STEP is
# about to run, and a send that must fail because it did; the receiver must
# have died by that SIGKILL.
crash_send() {
	rm -f "$TMP/ready"
	"$TEST_TOOL" crash-at "$2" "$3" -- receive "${rx_args[@]}" --ready-file "$TMP/ready" \
		>>"$rxlog" 2>&1 &
	crx=$!
	PIDS+=("$crx")
	receiver_wait "$crx" "$TMP/ready" "$rxlog"
	send >"$TMP/crash.json" 2>&1 && fail "$1: the sync succeeded: the crash point was not reached"
	wait_pid "$crx" 20 crc
	[ "$crc" = 137 ] || fail "$1: the receiver exited $crc, not by SIGKILL at the crash point"
}
# rx_status FIELD: a field of the receiver's status record (written at start,
# after recovery: what it would offer a sender or a promotion).
rx_status() {
	"$PVREPL" status --state-dir "$TMP/rstate" -o json | python3 -c '
import json, sys
v = json.load(sys.stdin)["volumes"][0]
c = {x["type"]: x["reason"] for x in v["conditions"]}
print({"state": v["state"], "epoch": v["epoch"], "consistent": c["Consistent"]}[sys.argv[1]])' "$1"
}

# Epoch 1, the first full sync, is killed before its third state record (the
# cursor at 128 MiB), so the one at 64 MiB is durable, and no map was ever
# committed on the standby: after the restart it resumes there, not from zero.
crash_send "first sync" state.create 3
rx_start
[ "$(rx_status state)" = initial_sync ] || fail "after the crash the standby is not syncing"
send >"$TMP/e1.json" || fail "epoch 1, resumed: $(cat "$TMP/e1.json")"
[ "$(json_get kind <"$TMP/e1.json")" = "full sync (resumed)" ] ||
	fail "the interrupted first sync did not resume: $(json_get kind <"$TMP/e1.json")"
# 144 MiB in 16 KiB blocks is 9216; resumed at 4096 (64 MiB), 5120 are left.
[ "$(json_get blocks_sent <"$TMP/e1.json")" = 5120 ] ||
	fail "the resumed sync sent $(json_get blocks_sent <"$TMP/e1.json") blocks, not the 5120 past its cursor"
dev_cmp "$src" "$dst" || fail "standby differs after the resumed first sync"

# Keep the sender's state after epoch 1; epoch 2 (a delta): the standby is
# consistent at 2. Keep both sides' state and the standby's image.
cp -a "$TMP/sstate" "$TMP/sstate.e1"
dd if=/dev/urandom of="$src" bs=1M count=4 seek=20 oflag=direct status=none
send >"$TMP/e2.json" || fail "epoch 2: $(cat "$TMP/e2.json")"
[ "$(json_get kind <"$TMP/e2.json")" = incremental ] || fail "epoch 2 was not a delta"
wait_applied "$TMP/rstate/vol" 2
rx_stop
dev_cmp "$src" "$dst" || fail "standby differs after epoch 2"
old_sha=$(dev_sha "$dst")
cp -a "$TMP/rstate" "$TMP/rstate.e2"
dd if="$dst" of="$TMP/dst.e2.img" bs=4M iflag=direct status=none
# Every block changes: the resync rewrites all of the standby.
dd if=/dev/urandom of="$src" bs=4M oflag=direct status=none 2>/dev/null || true
new_sha=$(dev_sha "$src")
[ "$new_sha" != "$old_sha" ] || fail "the source did not change"

points=()
for step in create write fsync rename dirsync; do
	for nth in 1 2 4; do points+=("state.$step:$nth"); done
done
for step in base.fsync base.rename base.dirsync log.rename log.dirsync; do
	points+=("$step:1")
done

n_old=0 n_new=0 n_sync=0
for p in "${points[@]}"; do
	step=${p%:*} nth=${p#*:}
	rm -rf "$TMP/rstate" "$TMP/sstate"
	cp -a "$TMP/rstate.e2" "$TMP/rstate"
	cp -a "$TMP/sstate.e1" "$TMP/sstate"
	dd if="$TMP/dst.e2.img" of="$dst" bs=4M oflag=direct status=none

	crash_send "$p" "$step" "$nth"

	rx_start # recovery
	state=$(rx_status state) epoch=$(rx_status epoch) cons=$(rx_status consistent)
	case $state in
	initial_sync)
		[ "$cons" = NoCompleteEpoch ] || fail "$p: syncing, but the Consistent reason is $cons"
		n_sync=$((n_sync + 1)) got=syncing ;;
	replicating)
		# a complete epoch (read live here: LiveRead, not CrashConsistent)
		[ "$cons" = LiveRead ] || fail "$p: replicating, but the Consistent reason is $cons"
		sha=$(dev_sha "$dst")
		if [ "$epoch" = 2 ]; then
			[ "$sha" = "$old_sha" ] || fail "$p: consistent at epoch 2 but the standby is not epoch 2's image"
			n_old=$((n_old + 1)) got="epoch 2"
		elif [ "$epoch" = 3 ]; then
			[ "$sha" = "$new_sha" ] || fail "$p: consistent at epoch 3 but the standby is not epoch 3's image"
			n_new=$((n_new + 1)) got="epoch 3"
		else
			fail "$p: consistent at epoch $epoch"
		fi ;;
	*) fail "$p: state $state after recovery" ;;
	esac
	echo "$p: $got"

	# The next send converges, whatever the crash left.
	send >"$TMP/after.json" || fail "$p: the send after recovery: $(cat "$TMP/after.json")"
	wait_applied "$TMP/rstate/vol" "$(json_get epoch <"$TMP/after.json")"
	dev_cmp "$src" "$dst" || fail "$p: standby differs after the converging send"
	rx_stop
done
# The points reach every outcome: before the sync's state is durable (old
# image), inside the sync, and after its commit (new image).
[ "$n_old" -gt 0 ] && [ "$n_sync" -gt 0 ] && [ "$n_new" -gt 0 ] ||
	fail "outcomes: $n_old old, $n_sync syncing, $n_new new: a class of crash points was not reached"
echo "ok: ${#points[@]} crash points: $n_old kept epoch 2, $n_sync said syncing, $n_new had epoch 3; all converged"
