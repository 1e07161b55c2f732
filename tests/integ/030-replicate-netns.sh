#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Replication across two network namespaces over mutual TLS: an initial sync, then
# incremental epochs after known changes (each must send exactly the 16 KiB blocks
# touched, and leave the standby byte-identical), a no-change epoch that sends
# nothing, and `pvrepl replicate` converging on its own.
#
#   namespace pvr-a-$$ (primary)                  namespace pvr-b-$$ (standby)
#   ┌──────────────────────────────┐             ┌───────────────────────────────┐
#   │ pvrepl send / replicate      │             │ pvrepl receive                │
#   │   cert 'primary'             │    veth     │   cert 'standby'              │
#   │ vethA 10.231.30.1/30 ────────┼─────────────┼──── vethB 10.231.30.2/30:PORT │
#   │ state $TMP/sstate            │             │ state $TMP/rstate/vol         │
#   └──────────────┬───────────────┘             └───────────────┬───────────────┘
#     /dev/loopS ($TMP/src.img, 64 MiB)            /dev/loopD ($TMP/dst.img, 64 MiB)
#     dd writes at known offsets                   cmp against loopS after each epoch
#   (loop devices are global; only the processes live in the namespaces)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
trap cleanup_common EXIT

BS=16384
BLOCKS=4096 # 64 MiB / 16 KiB
netns_pair 30
certs_make "$TMP/certs"

# Source: 24 MiB random, 16 MiB zeros, 8 MiB text, 16 MiB random. Standby: zeros.
{
	head -c 24M /dev/urandom
	head -c 16M /dev/zero
	(yes "pvrepl 030 standby text $$" || true) | head -c 8M
	head -c 16M /dev/urandom
} >"$TMP/src.img"
truncate -s 64M "$TMP/dst.img"
loop_attach src "$TMP/src.img"
loop_attach dst "$TMP/dst.img"

rxlog=$TMP/receiver.log
receiver_spawn rx "$NS_B" "$rxlog" "$TMP/ready" --listen "$ADDR_B:0" \
	--tls-dir "$TMP/certs/standby" --state-dir "$TMP/rstate" --volume "vol=$dst" \
	--allow vol=primary --journal-size 64M
receiver_wait "$rx" "$TMP/ready" "$rxlog"
case $RX_ADDR in "$ADDR_B":*) ;; *) fail "receiver bound $RX_ADDR, not on $ADDR_B" ;; esac

n=0
send() { # send: one epoch from namespace A; JSON in $TMP/send$n.json
	n=$((n + 1))
	local rc=0
	timeout 120 ip netns exec "$NS_A" "$PVREPL" send --volume vol --device "$src" \
		--state-dir "$TMP/sstate" --peer "$RX_ADDR" --tls-dir "$TMP/certs/primary" \
		--server-name standby -o json >"$TMP/send$n.json" 2>"$TMP/send$n.err" || rc=$?
	[ "$rc" = 0 ] || { cat "$TMP/send$n.err" "$TMP/send$n.json"; tail -n 5 "$rxlog"; fail "send $n exit $rc"; }
	out=$TMP/send$n.json
}
expect() { # expect FIELD VALUE: a field of the last send's JSON
	local got
	got=$(json_get "$1" <"$out")
	[ "$got" = "$2" ] || { cat "$out"; fail "send $n: $1 is '$got', expected '$2'"; }
}
converged() { # the last epoch applied on the standby, which now equals the source
	wait_applied "$TMP/rstate/vol" "$(json_get epoch <"$out")"
	dev_cmp "$src" "$dst" || fail "after send $n the standby differs from the source"
}
write4k() { # write4k SOURCE 4KIB_INDEX: a random 4 KiB at that index
	dd if=/dev/urandom of="$src" bs=4096 seek="$1" count=1 oflag=direct conv=notrunc status=none
}

# 1. Initial sync: every block goes (zero blocks as markers), the standby equals the source.
send
expect result ok
expect kind "full sync"
expect epoch 1
expect blocks_changed $BLOCKS
expect blocks_zero $((16 * 1024 * 1024 / BS))
expect blocks_sent $BLOCKS
grep -q "epoch=1 full sync complete" "$rxlog" || fail "receiver did not log the completed sync"
converged

# 2. Random 4 KiB writes at known offsets: blocks 0, 7 (twice: two 4 KiB in one
#    block), 100, 1600 (zero region), 2600 (text), 4000 → 6 blocks.
for i in 0 $((7 * 4)) $((7 * 4 + 3)) $((100 * 4 + 1)) $((1600 * 4 + 2)) $((2600 * 4)) $((4000 * 4 + 3)); do
	write4k "$i"
done
send
expect result ok
expect kind incremental
expect epoch 2
expect blocks_changed 6
expect blocks_sent 6
expect blocks_zero 0
grep -q "epoch=2 committed and applied: 6 blocks" "$rxlog" || fail "receiver log lacks epoch 2's 6 blocks"
converged

# 3. A zeroed 64 KiB region that is not block aligned: it starts 8 KiB into block
#    200 and ends 8 KiB into block 204, so 5 blocks change, 3 of them wholly zero.
dd if=/dev/zero of="$src" bs=8192 seek=$((200 * 2 + 1)) count=8 oflag=direct conv=notrunc status=none
send
expect result ok
expect kind incremental
expect epoch 3
expect blocks_changed 5
expect blocks_zero 3
converged

# 4. The last block (its last 4 KiB) and the first 4 KiB of block 3000.
write4k $((BLOCKS * 4 - 1))
write4k $((3000 * 4))
send
expect result ok
expect kind incremental
expect epoch 4
expect blocks_changed 2
converged

# 5. Nothing changed: an epoch that sends nothing and still succeeds.
send
expect result ok
expect kind incremental
expect epoch 5
expect blocks_changed 0
expect blocks_sent 0
expect payload_bytes 0
converged

# 6. `pvrepl replicate` converges on its own: changes, then 2 epochs 1 s apart.
for k in 11 12 13 2047 3999; do write4k $((k * 4 + 1)); done
timeout 60 ip netns exec "$NS_A" "$PVREPL" replicate --volume vol --device "$src" \
	--state-dir "$TMP/sstate" --peer "$RX_ADDR" --tls-dir "$TMP/certs/primary" \
	--server-name standby --interval 1s --max-epochs 2 -o json \
	>"$TMP/replicate.json" 2>"$TMP/replicate.err" || {
	cat "$TMP/replicate.err"
	fail "replicate failed"
}
python3 - "$TMP/replicate.json" <<'EOF' || fail "replicate's epochs are not as expected"
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(runs) == 2, runs
assert [r["result"] for r in runs] == ["ok", "ok"], runs
assert [r["epoch"] for r in runs] == [6, 7], runs
assert [r["kind"] for r in runs] == ["incremental"] * 2, runs
assert runs[0]["blocks_changed"] == 5 and runs[1]["blocks_changed"] == 0, runs
EOF
wait_applied "$TMP/rstate/vol" 7
dev_cmp "$src" "$dst" || fail "after replicate the standby differs from the source"
[ -z "$(grep -E 'FAILED|VERIFY|refused' "$rxlog" || true)" ] || { cat "$rxlog"; fail "receiver logged a failure"; }
echo "ok: initial sync, 4 incremental epochs with exact block counts, replicate converged"
