#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# replicate watches the route to its peer (netwatch, libnl): taking the link down
# in the middle of a sync pauses it at once — reported in well under a second,
# long before the 20 s --timeout — and bringing the link back resumes at once,
# without a backoff timer; the standby converges.
#
#   ns pvr-a-$$                                   ns pvr-b-$$
#   pvrepl replicate ── vethA 10.231.41.1 ═══ 10.231.41.2 vethB ── pvrepl receive
#   src (96 MiB random)        (tbf 100 mbit on vethA)               dst
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
trap cleanup_common EXIT
command -v tc >/dev/null || skip "needs tc (iproute2)"

netns_pair 41
ip netns exec "$NS_A" tc qdisc add dev vethA root tbf rate 100mbit burst 64kb latency 400ms
certs_make "$TMP/certs"
head -c 96M /dev/urandom >"$TMP/src.img"
truncate -s 96M "$TMP/dst.img"
loop_attach src "$TMP/src.img"
loop_attach dst "$TMP/dst.img"

receiver_spawn rx "$NS_B" "$TMP/recv.log" "$TMP/ready" --listen "$ADDR_B:0" \
	--tls-dir "$TMP/certs/standby" --state-dir "$TMP/rstate" --volume "vol=$dst" \
	--allow vol=primary --timeout 20s
receiver_wait "$rx" "$TMP/ready" "$TMP/recv.log"

ip netns exec "$NS_A" "$PVREPL" replicate --volume vol --device "$src" \
	--state-dir "$TMP/sstate" --peer "$RX_ADDR" --tls-dir "$TMP/certs/primary" \
	--server-name standby --interval 30s --timeout 20s --progress none -o json \
	>"$TMP/rep.out" 2>"$TMP/rep.err" &
rep=$!
PIDS+=("$rep")

ms() { date +%s%3N; }
wait_line() { # wait_line PATTERN SECONDS: the ms timestamp of the first matching line
	local i
	for ((i = 0; i < $2 * 20; i++)); do
		if grep -q "$1" "$TMP/rep.err"; then
			grep "$1" "$TMP/rep.err" | head -n 1 | sed -n 's/.* at \([0-9]*\) ms.*/\1/p'
			return 0
		fi
		sleep 0.05
	done
	cat "$TMP/rep.err" >&2
	fail "no '$1' line within $2 s"
}

# The sync (96 MiB at 100 mbit: about 8 s) is in flight; cut the link.
for ((i = 0; i < 100; i++)); do
	grep -q "sync started" "$TMP/recv.log" && break
	sleep 0.1
done
sleep 1.5
t_down=$(ms)
ip -n "$NS_A" link set vethA down
t_paused=$(wait_line "paused at" 5)
echo "paused $((t_paused - t_down)) ms after the link went down"
[ $((t_paused - t_down)) -lt 1000 ] || fail "pause reported $((t_paused - t_down)) ms after the cut"
grep -q "vethA" <(grep "paused at" "$TMP/rep.err") || fail "the pause does not name the link"
grep -q '^vol *primary *paused' <("$PVREPL" status --state-dir "$TMP/sstate") ||
	fail "status does not say paused"

sleep 3
t_up=$(ms)
ip -n "$NS_A" link set vethA up
t_resumed=$(wait_line "resumed at" 5)
echo "resumed $((t_resumed - t_up)) ms after the link came back"
[ $((t_resumed - t_up)) -lt 1000 ] || fail "resume reported $((t_resumed - t_up)) ms after the link"
! grep -q "retrying in" "$TMP/rep.err" || fail "a backoff timer ran instead of the pause"

# It reconnects at once (not after the 30 s interval) and the sync completes.
wait_applied "$TMP/rstate/vol" 1 || fail "the sync did not complete after the resume"
t_done=$(ms)
[ $((t_done - t_up)) -lt 25000 ] || fail "resync took $((t_done - t_up)) ms"
kill "$rep"
wait_pid "$rep" 10 rep_rc
dev_cmp "$src" "$dst" || fail "standby differs from the source"
echo "ok: paused within a second of the cut, resumed within a second of the link, converged"
