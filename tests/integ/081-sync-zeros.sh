#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A full sync zeroes the standby's zero runs with the device's zero-out
# (BLKZEROOUT; loop turns it into a zero range of its file) instead of writing
# zeros through the page of every block: the receiver writes the non-zero bytes,
# not the volume. Checked with the receiver's own write_bytes (/proc/PID/io),
# and the standby is byte-identical, zero runs included, over a standby that
# held other data before (so a skipped zero run would show).
#
#   src.img (64 MiB: 16 MiB random, 48 MiB zeros) ─loop─► pvrepl send ──► 127.0.0.1
#   ──► pvrepl receive ─► dst.img (64 MiB of random bytes before the sync) ─loop
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
trap cleanup_common EXIT

certs_make "$TMP"
head -c 16M /dev/urandom >"$TMP/src.img"
truncate -s 64M "$TMP/src.img"
head -c 64M /dev/urandom >"$TMP/dst.img"
loop_attach src "$TMP/src.img"
loop_attach dst "$TMP/dst.img"
receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" --listen 127.0.0.1:0 \
	--tls-dir "$TMP/standby" --state-dir "$TMP/rstate" --volume "vol=$dst" --allow vol=primary
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
before=$(awk '/^write_bytes/ { print $2 }' "/proc/$rpid/io")
"$PVREPL" send --volume vol --device "$src" --state-dir "$TMP/sstate" --peer "$RX_ADDR" \
	--tls-dir "$TMP/primary" --server-name standby --progress none -o json >"$TMP/e1.json"
[ "$(json_get result <"$TMP/e1.json")" = ok ] || fail "the initial sync failed"
[ "$(json_get blocks_zero <"$TMP/e1.json")" -ge 3000 ] || fail "the zero runs did not travel as markers"
wait_applied "$TMP/rstate/vol" 1
written=$(($(awk '/^write_bytes/ { print $2 }' "/proc/$rpid/io") - before))
echo "the receiver wrote $written bytes for 16 MiB of data and 48 MiB of zeros"
[ "$written" -lt $((32 << 20)) ] ||
	fail "the receiver wrote $written bytes: the zero runs were written as zeros"
dev_cmp "$src" "$dst" || fail "the standby differs from the source"
echo "ok: zero runs zeroed by the device, standby identical"
