#!/usr/bin/env bash
# suite: fault (also run under ASan + UBSan by make check)
# SPDX-License-Identifier: Apache-2.0
# An epoch larger than the receiver's journal (issue 11, defect 5: the sender
# saw only "Connection reset by peer" and retried the same doomed epoch
# forever; raising --journal-size did nothing, as the journal kept its size,
# while the error named the new one).
#
#   src.img (64 MiB file) ──pvrepl send / replicate──► 127.0.0.1 ──pvrepl receive
#                                                      --journal-size 16M──► dst.img
# Checked:
#   1. an incremental epoch of 32 MiB: send fails with JOURNAL_FULL, naming the
#      journal's 16777216 bytes (not a reset); nothing applied;
#   2. replicate stops with that message instead of retrying (exit non-zero,
#      within 20 s);
#   3. the receiver restarted with --journal-size 64M says it resized the
#      journal; the same epoch then succeeds and the standby equals the source.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT

certs_make "$TMP"
head -c 64M /dev/urandom >"$TMP/src.img"
truncate -s 64M "$TMP/dst.img"
rx() { # rx SIZE: starts the receiver with --journal-size SIZE
	receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" --listen 127.0.0.1:0 \
		--tls-dir "$TMP/standby" --state-dir "$TMP/rstate" --volume "vol=$TMP/dst.img" \
		--allow vol=primary --journal-size "$1"
	receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
}
SEND=(--volume vol --device "$TMP/src.img" --state-dir "$TMP/sstate" --tls-dir "$TMP/primary"
	--server-name standby --progress none)
rx 16M
"$PVREPL" send "${SEND[@]}" --peer "$RX_ADDR" -o json >"$TMP/e1.json" ||
	fail "the initial sync failed: $(cat "$TMP/e1.json")"
wait_applied "$TMP/rstate/vol" 1
head -c 32M /dev/urandom | dd of="$TMP/src.img" bs=1M seek=16 conv=notrunc status=none

# 1. The doomed epoch says why.
rc=0
"$PVREPL" send "${SEND[@]}" --peer "$RX_ADDR" -o json >"$TMP/e2.json" 2>"$TMP/e2.err" || rc=$?
[ "$rc" != 0 ] || fail "an epoch larger than the journal succeeded"
msg=$(json_get message <"$TMP/e2.json")
echo "send: exit $rc: $msg"
[[ $msg == *"does not fit the receiver's journal of 16777216 bytes"*JOURNAL_FULL* ]] ||
	fail "the sender was not told the journal is too small: $msg"
[ "$(python3 -S -c 'import json,sys; print(json.load(sys.stdin)["volumes"][0]["epoch"])' \
	< <("$PVREPL" status --state-dir "$TMP/rstate" -o json))" = 1 ] || fail "the standby moved off epoch 1"

# 2. replicate does not retry it forever.
rc=0
timeout 20 "$PVREPL" replicate "${SEND[@]}" --peer "$RX_ADDR" --interval 1s --no-netwatch \
	>"$TMP/rep.out" 2>"$TMP/rep.log" || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || { tail -n 5 "$TMP/rep.log"; fail "replicate kept retrying (exit $rc)"; }
grep -q "JOURNAL_FULL" "$TMP/rep.log" || { tail -n 5 "$TMP/rep.log"; fail "replicate did not say why it stopped"; }
echo "replicate: exit $rc: $(grep -m1 -o 'does not fit[^;]*' "$TMP/rep.log")"

# 3. A larger journal_size takes effect at the next start.
kill "$rpid"
wait "$rpid" 2>/dev/null || true
pid_forget "$rpid"
rx 64M
grep -q "journal resized from 16777216 to 67108864 bytes" "$TMP/recv.log" ||
	{ tail -n 5 "$TMP/recv.log"; fail "the journal was not resized"; }
[ "$(stat -c %s "$TMP/rstate/vol/journal")" = 67108864 ] || fail "the journal file is not 64 MiB"
"$PVREPL" send "${SEND[@]}" --peer "$RX_ADDR" -o json >"$TMP/e3.json" ||
	fail "the epoch failed with the larger journal: $(cat "$TMP/e3.json")"
wait_applied "$TMP/rstate/vol" "$(json_get epoch <"$TMP/e3.json")"
dev_cmp "$TMP/src.img" "$TMP/dst.img" || fail "the standby differs from the source"
echo "ok"
