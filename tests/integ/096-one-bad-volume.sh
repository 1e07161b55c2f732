#!/usr/bin/env bash
# suite: fault (also run under ASan + UBSan by make check)
# SPDX-License-Identifier: Apache-2.0
# One volume that cannot be served does not stop the others (issue 11, defect
# 6: a flipped byte in one volume's map, or one resized standby, stopped the
# whole receiver). That volume is failed alone: its status says error with the
# fix, its sender is refused with the same reason, and the other volumes are
# served. A receiver none of whose volumes can be served does not start.
#
#   a.img, b.img, c.img ──pvrepl send──► 127.0.0.1 ──pvrepl receive──► a-, b-, c-dst.img
#   between runs: a byte of rstate/b/map flipped; c-dst.img grown by 1 MiB
#
# Checked:
#   1. the receiver starts, logs that 2 of 3 volumes cannot be served, and
#      serves a (an epoch is ok, the standby equals its source);
#   2. b's status: state error, the message names its map; c's names the size;
#      status --check exits 2;
#   3. b's sender is refused, naming the volume and the damage;
#   4. with only b configured, the receiver does not start (exit non-zero),
#      naming the map and what to do;
#   5. doing that (map and map.log removed), b resyncs in full and equals its
#      source.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT

certs_make "$TMP"
for v in a b c; do
	head -c 8M /dev/urandom >"$TMP/$v.img"
	truncate -s 8M "$TMP/$v-dst.img"
done
RX=(--listen 127.0.0.1:0 --tls-dir "$TMP/standby" --state-dir "$TMP/rstate")
for v in a b c; do RX+=(--volume "$v=$TMP/$v-dst.img" --allow "$v=primary"); done
send_vol() { # send_vol VOLUME: one epoch; exit code on stdout, output in $TMP/send-VOLUME.*
	local rc=0
	"$PVREPL" send --volume "$1" --device "$TMP/$1.img" --state-dir "$TMP/sstate-$1" \
		--peer "$RX_ADDR" --tls-dir "$TMP/primary" --server-name standby --progress none \
		-o json >"$TMP/send-$1.json" 2>"$TMP/send-$1.err" || rc=$?
	echo "$rc"
}
receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" "${RX[@]}"
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
for v in a b c; do
	[ "$(send_vol "$v")" = 0 ] || fail "first epoch of $v failed: $(cat "$TMP/send-$v.err")"
	wait_applied "$TMP/rstate/$v" 1
done
kill "$rpid"
wait "$rpid" 2>/dev/null || true
pid_forget "$rpid"

# Damage: one byte of b's map, and c's standby resized.
b=$(od -An -t u1 -j 100 -N 1 "$TMP/rstate/b/map" | tr -d ' ')
printf "$(printf '\\%03o' $((b ^ 0x55)))" | dd of="$TMP/rstate/b/map" bs=1 seek=100 conv=notrunc status=none
truncate -s 9M "$TMP/c-dst.img"

# 1. The receiver serves a.
: >"$TMP/recv.log"
receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" "${RX[@]}"
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
grep -q "2 of 3 volume(s) cannot be served" "$TMP/recv.log" ||
	{ cat "$TMP/recv.log"; fail "the receiver did not say which volumes it cannot serve"; }
head -c 1M /dev/urandom | dd of="$TMP/a.img" bs=1M seek=2 conv=notrunc status=none
[ "$(send_vol a)" = 0 ] || fail "volume a was not served next to the broken ones: $(cat "$TMP/send-a.err")"
wait_applied "$TMP/rstate/a" 2
dev_cmp "$TMP/a.img" "$TMP/a-dst.img" || fail "standby a differs from its source"

# 2. Status: b and c in error, each with its reason; --check critical.
"$PVREPL" status --state-dir "$TMP/rstate" -o json >"$TMP/status.json"
python3 -S - "$TMP/status.json" "$TMP/rstate/b/map" <<'PY' || fail "status of the broken volumes"
import json, sys
vols = {v["volume"]: v for v in json.load(open(sys.argv[1]))["volumes"]}
assert vols["a"]["state"] == "replicating", vols["a"]["state"]
for name, needle in (("b", sys.argv[2]), ("c", "bytes")):
    v = vols[name]
    assert v["state"] == "error", (name, v["state"])
    assert needle in (v["lastError"] or ""), (name, v["lastError"])
    print(name, "error:", v["lastError"])
PY
rc=0
"$PVREPL" status --state-dir "$TMP/rstate" --check >/dev/null || rc=$?
[ "$rc" = 2 ] || fail "--check with two volumes in error: exit $rc, expected 2"

# 3. b's sender is refused with the reason.
rc=$(send_vol b)
[ "$rc" != 0 ] || fail "volume b was served with a damaged map"
grep -q "volume b is not served: .*map" "$TMP/send-b.json" "$TMP/send-b.err" ||
	{ cat "$TMP/send-b.json" "$TMP/send-b.err"; fail "b's sender was not told why"; }
kill "$rpid"
wait "$rpid" 2>/dev/null || true
pid_forget "$rpid"

# 4. Nothing to serve: the receiver does not start.
rc=0
timeout 20 "$PVREPL" receive --listen 127.0.0.1:0 --tls-dir "$TMP/standby" --state-dir "$TMP/rstate" \
	--volume "b=$TMP/b-dst.img" >"$TMP/only-b.log" 2>&1 || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "a receiver with only a broken volume started (exit $rc)"
grep -q "$TMP/rstate/b/map" "$TMP/only-b.log" || { cat "$TMP/only-b.log"; fail "no message naming b's map"; }

# 5. The fix the message gives works: without map and map.log, b resyncs in full.
grep -q "remove the files map and map.log from $TMP/rstate/b" "$TMP/only-b.log" ||
	fail "the message does not say what to do about the damaged map"
rm "$TMP/rstate/b/map" "$TMP/rstate/b/map.log"
receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" --listen 127.0.0.1:0 --tls-dir "$TMP/standby" \
	--state-dir "$TMP/rstate" --volume "b=$TMP/b-dst.img" --allow b=primary
receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
head -c 1M /dev/urandom | dd of="$TMP/b.img" bs=1M seek=5 conv=notrunc status=none
[ "$(send_vol b)" = 0 ] || fail "volume b after its map was removed: $(cat "$TMP/send-b.json" "$TMP/send-b.err")"
wait_applied "$TMP/rstate/b" "$(json_get epoch <"$TMP/send-b.json")"
dev_cmp "$TMP/b.img" "$TMP/b-dst.img" || fail "standby b differs from its source after the resync"
echo "b after its map was removed: $(json_get kind <"$TMP/send-b.json")"
echo "ok"
