#!/usr/bin/env bash
# suite: fault (also run under ASan + UBSan by make check)
# SPDX-License-Identifier: Apache-2.0
# A damaged journal superblock slot is what the journal's two slots are for:
# the receiver recovers from the other one, never aborts (bytes from disk never
# reach an assert, DESIGN.md invariant 6). Issue 11, defect 7: with the newest
# slot (APPLIED of the last epoch) damaged, the older one (COMMITTED of that
# same epoch) replays it, and the map, which already holds that epoch, was then
# "committed" again: SIGABRT on `epoch > m->epoch` in map_commit.
#
#   src.img (16 MiB file) ──pvrepl send──► 127.0.0.1 ──pvrepl receive──► dst.img
#   between runs: one byte of a superblock slot of rstate/vol/journal flipped
#
# Checked:
#   1. the newest slot damaged: the receiver starts, replays the epoch the
#      older slot names (logged), its epoch is unchanged, the next epoch is
#      ok and the standby equals the source;
#   2. both slots damaged: the receiver does not abort (no SIGABRT, no core),
#      and names the journal and what to do.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT

certs_make "$TMP"
head -c 16M /dev/urandom >"$TMP/src.img"
truncate -s 16M "$TMP/dst.img"
J="$TMP/rstate/vol/journal"
start_rx() {
	receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" --listen 127.0.0.1:0 \
		--tls-dir "$TMP/standby" --state-dir "$TMP/rstate" --volume "vol=$TMP/dst.img" \
		--allow vol=primary
}
stop_rx() {
	kill "$rpid"
	wait "$rpid" 2>/dev/null || true
	pid_forget "$rpid"
}
send_one() { # send_one: one epoch; its epoch number on stdout
	"$PVREPL" send --volume vol --device "$TMP/src.img" --state-dir "$TMP/sstate" \
		--peer "$RX_ADDR" --tls-dir "$TMP/primary" --server-name standby --progress none \
		-o json >"$TMP/send.json" 2>"$TMP/send.err" ||
		{ cat "$TMP/send.json" "$TMP/send.err" >&2; fail "send failed"; }
	json_get epoch <"$TMP/send.json"
}
# slot_seq K: the sequence of superblock slot K (0 or 1), at byte 48 of it.
slot_seq() {
	od -An -t u8 -j $(($1 * 4096 + 48)) -N 8 "$J" | tr -d ' '
}
flip() { # flip OFFSET: inverts one byte of the journal
	local b
	b=$(od -An -t u1 -j "$1" -N 1 "$J" | tr -d ' ')
	printf "$(printf '\\%03o' $((b ^ 0xff)))" | dd of="$J" bs=1 seek="$1" conv=notrunc status=none
}

start_rx
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
send_one >/dev/null
head -c 1M /dev/urandom | dd of="$TMP/src.img" bs=1M seek=3 conv=notrunc status=none
ep=$(send_one)
wait_applied "$TMP/rstate/vol" "$ep"
stop_rx

# 1. The newest slot damaged (a byte inside its checksummed superblock).
s0=$(slot_seq 0)
s1=$(slot_seq 1)
newest=$((s0 > s1 ? 0 : 1))
echo "slots: sequence $s0 and $s1; damaging slot $newest (the newest)"
flip $((newest * 4096 + 100))
: >"$TMP/recv.log"
start_rx
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
grep -q "recovered" "$TMP/recv.log" || { cat "$TMP/recv.log"; fail "the receiver did not log its recovery"; }
cat "$TMP/recv.log"
head -c 1M /dev/urandom | dd of="$TMP/src.img" bs=1M seek=9 conv=notrunc status=none
ep2=$(send_one)
[ "$ep2" = $((ep + 1)) ] || fail "after the recovery the next epoch is $ep2, expected $((ep + 1))"
wait_applied "$TMP/rstate/vol" "$ep2"
dev_cmp "$TMP/src.img" "$TMP/dst.img" || fail "the standby differs from the source after the recovery"
stop_rx

# 2. Both slots damaged: an error naming the journal, never an abort.
flip 100
flip $((4096 + 100))
rc=0
timeout 20 "$PVREPL" receive --listen 127.0.0.1:0 --tls-dir "$TMP/standby" --state-dir "$TMP/rstate" \
	--volume "vol=$TMP/dst.img" --allow vol=primary --ready-file "$TMP/ready2" >"$TMP/recv2.log" 2>&1 &
r2=$!
PIDS+=("$r2")
for ((i = 0; i < 100; i++)); do
	[ -s "$TMP/ready2" ] && break
	pid_alive "$r2" || break
	sleep 0.1
done
if pid_alive "$r2"; then kill "$r2"; fi
wait "$r2" 2>/dev/null || rc=$?
pid_forget "$r2"
cat "$TMP/recv2.log"
[ "$rc" != 134 ] && ! grep -q "assertion failed" "$TMP/recv2.log" ||
	fail "both slots damaged: the receiver aborted (exit $rc)"
grep -q "journal" "$TMP/recv2.log" || fail "both slots damaged: no message naming the journal"
echo "ok"
