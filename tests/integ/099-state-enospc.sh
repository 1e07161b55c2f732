#!/usr/bin/env bash
# suite: fault (also run under ASan + UBSan by make check)
# SPDX-License-Identifier: Apache-2.0
# A full disk under the receiver's state directory (issue 11, defect 8): a
# journal that cannot be made leaves no partial journal.tmp holding the space,
# and a map that cannot be committed after an acknowledged epoch does not cost
# a full resync: at the next start the epoch is applied again from the journal
# and its map committed.
#
#   state.img (48 MiB ext4) ─loop─► mounted at $TMP/state: the receiver's --state-dir
#   src.img (32 MiB) ──pvrepl send──► 127.0.0.1 ──pvrepl receive --journal-size 16M──► dst.img
#   filler: a file on the state file system, grown until it is full
#
# Checked:
#   1. the state file system full before the journal exists: the epoch fails,
#      and no journal.tmp is left;
#   2. the journal made, then the file system filled: an epoch is acked, its
#      map commit fails (the volume is failed, status error names it);
#   3. space back, without a restart: the next sender's arrival recovers the
#      volume in place (that epoch applied again, its map committed); the
#      epoch is incremental (no full resync) and the standby equals the source.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
trap cleanup_common EXIT
command -v mkfs.ext4 >/dev/null || skip "mkfs.ext4 missing (e2fsprogs)"

certs_make "$TMP"
truncate -s 48M "$TMP/state.img"
mkfs.ext4 -q -F -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 "$TMP/state.img"
loop_attach sdev "$TMP/state.img"
mkdir "$TMP/state"
mount "$sdev" "$TMP/state"
MOUNTS+=("$TMP/state")
head -c 32M /dev/urandom >"$TMP/src.img"
truncate -s 32M "$TMP/dst.img"
rx() {
	receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" --listen 127.0.0.1:0 \
		--tls-dir "$TMP/standby" --state-dir "$TMP/state/rx" --volume "vol=$TMP/dst.img" \
		--allow vol=primary --journal-size 16M
	receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
}
rx_stop() {
	kill "$rpid"
	wait "$rpid" 2>/dev/null || true
	pid_forget "$rpid"
}
send_one() { # send_one NAME: one epoch, its JSON in $TMP/NAME.json; its exit code on stdout
	local rc=0
	"$PVREPL" send --volume vol --device "$TMP/src.img" --state-dir "$TMP/sstate" \
		--peer "$RX_ADDR" --tls-dir "$TMP/primary" --server-name standby --progress none \
		-o json >"$TMP/$1.json" 2>"$TMP/$1.err" || rc=$?
	echo "$rc"
}
fill() { # the state file system to its last block (MiBs, then 4 KiB blocks)
	dd if=/dev/zero of="$TMP/state/filler" bs=1M status=none 2>/dev/null || true
	dd if=/dev/zero of="$TMP/state/filler" bs=4k oflag=append conv=notrunc status=none 2>/dev/null || true
	sync
	echo "state file system: $(df -B1 --output=avail "$TMP/state" | tail -n 1) bytes free"
}
change() { head -c 2M /dev/urandom | dd of="$TMP/src.img" bs=1M seek="$1" conv=notrunc status=none; }

rx
[ "$(send_one e1)" = 0 ] || fail "the initial sync failed: $(cat "$TMP/e1.json")"
wait_applied "$TMP/state/rx/vol" 1

# 1. No room for the journal (made at the first incremental epoch).
fill
change 4
rc=$(send_one e2)
[ "$rc" != 0 ] || fail "an epoch succeeded with no room for the journal"
echo "no room for the journal: $(json_get message <"$TMP/e2.json")"
[ ! -e "$TMP/state/rx/vol/journal.tmp" ] || fail "a partial journal.tmp was left on the full file system"
rx_stop
rm -f "$TMP/state/filler"

# 2. The journal exists; the file system fills; the map's commit fails after the ack.
rx
[ "$(send_one e3)" = 0 ] || fail "epoch with room failed: $(cat "$TMP/e3.json")"
ep=$(json_get epoch <"$TMP/e3.json")
wait_applied "$TMP/state/rx/vol" "$ep"
fill
# Enough blocks that the map's record does not fit what is left (the
# journal is preallocated, so the epoch itself is written and acked).
head -c 8M /dev/urandom | dd of="$TMP/src.img" bs=1M seek=12 conv=notrunc status=none
rc=$(send_one e4)
ep4=$(json_get epoch <"$TMP/e4.json")
echo "epoch $ep4 with the state file system full: exit $rc: $(json_get message <"$TMP/e4.json")"
for ((i = 0; i < 50; i++)); do
	grep -q "FAILED" "$TMP/recv.log" && break
	sleep 0.1
done
grep "FAILED" "$TMP/recv.log" | tail -n 1
grep -q "FAILED: .*map" "$TMP/recv.log" || { tail -n 5 "$TMP/recv.log"; fail "the map's commit did not fail on the full file system"; }
[ "$("$PVREPL" status --state-dir "$TMP/state/rx" -o json | python3 -S -c 'import json,sys; print(json.load(sys.stdin)["volumes"][0]["state"])')" = error ] ||
	fail "status does not say error for the failed volume"

# 3. Space back, no restart: the next sender's arrival recovers the volume in
# place (the epoch applied again, its map committed), as a restart would.
rm -f "$TMP/state/filler"
sync
change 20
rc=$(send_one e5)
[ "$rc" = 0 ] || fail "the epoch after the recovery failed: $(cat "$TMP/e5.json")"
kind=$(json_get kind <"$TMP/e5.json")
echo "after the recovery: $kind, epoch $(json_get epoch <"$TMP/e5.json")"
[ "$kind" = incremental ] || fail "the epoch after the recovery was a $kind (the durable epoch was lost)"
grep -q "recovered: replayed committed epoch" "$TMP/recv.log" &&
	grep -q "recovered in place" "$TMP/recv.log" ||
	{ tail -n 8 "$TMP/recv.log"; fail "the receiver did not recover the volume in place"; }
wait_applied "$TMP/state/rx/vol" "$(json_get epoch <"$TMP/e5.json")"
dev_cmp "$TMP/src.img" "$TMP/dst.img" || fail "the standby differs from the source"
echo "ok"
