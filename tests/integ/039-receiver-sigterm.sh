#!/usr/bin/env bash
# suite: fault (also run under ASan + UBSan by make check)
# SPDX-License-Identifier: Apache-2.0
# SIGTERM stops the receiver promptly even with a sync in flight: the epoch is
# aborted cleanly (the standby stays `syncing`, never offered as consistent), the
# process exits within seconds instead of waiting for the sender, and after a
# restart the next send converges.
#
#   src.img (64 MiB) ──pvrepl send --max-rate 8M──► 127.0.0.1 ──pvrepl receive──► dst.img
#                                              SIGTERM mid-sync ──┘
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT

certs_make "$TMP"
head -c 64M /dev/urandom >"$TMP/src.img"
truncate -s 64M "$TMP/dst.img"
start_rx() {
	receiver_spawn rpid - "$TMP/recv.log" "$TMP/ready" --listen 127.0.0.1:0 \
		--tls-dir "$TMP/standby" --state-dir "$TMP/rstate" --volume "vol=$TMP/dst.img" \
		--allow vol=primary
	receiver_wait "$rpid" "$TMP/ready" "$TMP/recv.log"
}
send() {
	"$PVREPL" send --volume vol --device "$TMP/src.img" --state-dir "$TMP/sstate" \
		--peer "$RX_ADDR" --tls-dir "$TMP/primary" --server-name standby --progress none \
		-o json "$@"
}

start_rx
send --max-rate 8M >"$TMP/s1.json" 2>"$TMP/s1.err" &
spid=$!
PIDS+=("$spid")
for ((i = 0; i < 100; i++)); do
	grep -q "full sync started" "$TMP/recv.log" && break
	sleep 0.05
done
sleep 1.5
t0=$(date +%s%3N)
kill -TERM "$rpid"
wait_pid "$rpid" 10 rx_rc
t1=$(date +%s%3N)
echo "receiver stopped $((t1 - t0)) ms after SIGTERM (exit $rx_rc)"
[ "$rx_rc" = 0 ] || fail "the receiver exited $rx_rc on SIGTERM"
[ $((t1 - t0)) -lt 5000 ] || fail "the receiver took $((t1 - t0)) ms to stop"
wait_pid "$spid" 30 s_rc
[ "$s_rc" != 0 ] || fail "the sender reported success for an aborted sync"
grep -q "aborting 1 connection" "$TMP/recv.log" || fail "the receiver did not say it aborted"
# The receiver is gone: its record's state is unknown, and what it last said
# (still syncing) is given with the time.
"$PVREPL" status --state-dir "$TMP/rstate" >"$TMP/st.txt"
cat "$TMP/st.txt"
grep -q '^vol *secondary *unknown' "$TMP/st.txt" && grep -q 'is not running: .*when the volume was initial_sync' "$TMP/st.txt" ||
	fail "the standby is not shown as unknown, last seen still syncing"

start_rx
send >"$TMP/s2.json"
[ "$(json_get result <"$TMP/s2.json")" = ok ] || fail "the send after the restart failed"
wait_applied "$TMP/rstate/vol" "$(json_get epoch <"$TMP/s2.json")"
cmp "$TMP/src.img" "$TMP/dst.img" || fail "standby differs after the restart"
echo "ok: SIGTERM aborts the sync at once; the restart converges"
