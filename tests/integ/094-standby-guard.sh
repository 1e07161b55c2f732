#!/usr/bin/env bash
# suite: fault (also run under ASan + UBSan by make check)
# SPDX-License-Identifier: Apache-2.0
# Nothing writes a standby while it is served (issue 11, defect 2: a read-write
# mount of the standby during a drill left it different for good while status
# said 0 B out of sync). The receiver holds a block-device standby exclusively
# (O_EXCL), so a mount fails with EBUSY; it refuses to start on a standby that
# is mounted, and on a standby file that a loop device exposes.
#
#   src.img (32 MiB ext4 file) ──pvrepl send──► 127.0.0.1 ──pvrepl receive──► $dst (loop)
#                                                                  dst2.img (file) ─► loop
# Checked:
#   1. while the receiver serves $dst, `mount $dst` fails (busy), the next epoch
#      is ok and the standby equals the source;
#   2. the receiver stopped and $dst mounted (read-only, noload): the receiver
#      refuses to start, naming the volume, the device, "mounted" and the fix;
#      unmounted, it starts and serves;
#   3. a standby file attached to a loop device: refused, naming the loop device.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
MNT="$TMP/mnt"
trap cleanup_common EXIT
command -v mkfs.ext4 >/dev/null || skip "mkfs.ext4 missing (e2fsprogs)"

certs_make "$TMP"
truncate -s 32M "$TMP/src.img" "$TMP/dst.img" "$TMP/dst2.img"
mkfs.ext4 -q -F "$TMP/src.img"
loop_attach dst "$TMP/dst.img"
mkdir "$MNT"
RX=(--listen 127.0.0.1:0 --tls-dir "$TMP/standby" --state-dir "$TMP/rstate" --volume "vol=$dst"
	--allow vol=primary)
send_one() {
	"$PVREPL" send --volume vol --device "$TMP/src.img" --state-dir "$TMP/sstate" \
		--peer "$RX_ADDR" --tls-dir "$TMP/primary" --server-name standby --progress none \
		-o json >"$TMP/send.json" 2>"$TMP/send.err" ||
		{ cat "$TMP/send.json" "$TMP/send.err" >&2; fail "send failed"; }
	json_get epoch <"$TMP/send.json"
}

# 1. Served: a mount is refused by the kernel (the receiver's exclusive claim).
receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" "${RX[@]}"
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
ep=$(send_one)
wait_applied "$TMP/rstate/vol" "$ep"
if mount -o ro,noload "$dst" "$MNT" 2>"$TMP/mount.err"; then
	umount "$MNT"
	fail "the standby $dst could be mounted while the receiver served it"
fi
cat "$TMP/mount.err"
grep -qi "busy" "$TMP/mount.err" || fail "mounting the served standby failed, but not as busy"
ep=$(send_one)
wait_applied "$TMP/rstate/vol" "$ep"
dev_cmp "$TMP/src.img" "$dst" || fail "the standby differs from the source"
kill "$rpid"
wait "$rpid" 2>/dev/null || true
pid_forget "$rpid"

# 2. Mounted before the receiver starts: refused with the fix; served once unmounted.
# The exclusive claim ends with the receiver's io_uring, which the kernel tears
# down just after the process is reaped: the mount may need a moment (bounded).
for ((i = 0; i < 50; i++)); do
	mount -o ro,noload "$dst" "$MNT" 2>/dev/null && break
	sleep 0.1
done
mountpoint -q "$MNT" || fail "the standby could not be mounted 5 s after the receiver stopped"
MOUNTS+=("$MNT")
rc=0
timeout 20 "$PVREPL" receive "${RX[@]}" >"$TMP/refused.log" 2>&1 || rc=$?
cat "$TMP/refused.log"
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "the receiver started on a mounted standby (exit $rc)"
grep -q "volume vol: the standby $dst is mounted or held" "$TMP/refused.log" ||
	fail "the refusal does not name the volume and the device"
grep -q "unmount it" "$TMP/refused.log" || fail "the refusal does not say to unmount it"
umount "$MNT"
receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" "${RX[@]}"
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
kill "$rpid"
wait "$rpid" 2>/dev/null || true
pid_forget "$rpid"

# 3. A standby file that a loop device exposes.
loop_attach over "$TMP/dst2.img"
rc=0
timeout 20 "$PVREPL" receive --listen 127.0.0.1:0 --tls-dir "$TMP/standby" --state-dir "$TMP/rstate2" \
	--volume "v2=$TMP/dst2.img" >"$TMP/file.log" 2>&1 || rc=$?
cat "$TMP/file.log"
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "the receiver served a standby file a loop device exposes (exit $rc)"
grep -q "volume v2: the standby $TMP/dst2.img is the backing file of $over" "$TMP/file.log" ||
	fail "the refusal does not name the loop device over the standby file"
echo "ok"
