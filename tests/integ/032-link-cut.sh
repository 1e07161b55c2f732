#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The link goes down in the middle of a full sync and comes back: `pvrepl
# replicate` must notice within its --timeout, retry, and converge once the link
# is up, without anyone restarting anything. The first volume (64 MiB) is cut
# before the receiver persisted a cursor, so its sync restarts; the second
# (192 MiB) is cut after the first cursor (every 64 MiB), so its sync must resume
# from the cursor instead of from zero. The route watcher is off here
# (--no-netwatch): this is the fallback for a cut the sender's own links do not
# show (further along the path), where only the timeout can tell; 041 tests the
# watcher.
#
#   namespace pvr-a-$$ (primary)                      namespace pvr-b-$$ (standby)
#   ┌───────────────────────────────────┐            ┌───────────────────────────────┐
#   │ pvrepl replicate --timeout 3s     │            │ pvrepl receive --timeout 3s   │
#   │ vethA 10.231.32.1/30              │    veth    │ vethB 10.231.32.2/30:PORT     │
#   │   tbf 64mbit, then 200mbit ───────┼──── ✂ ─────┼──►  vol=loopD  big=loopD2     │
#   │   (ip link set vethA down, 4 s)   │            │ state $TMP/rstate/{vol,big}   │
#   └───────────────┬───────────────────┘            └───────────────────────────────┘
#     loopS  ($TMP/src.img, 64 MiB random)
#     loopS2 ($TMP/big.img, 192 MiB random)            cmp against the sources at the end
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
trap cleanup_common EXIT
command -v tc >/dev/null || skip "needs tc (iproute2)"

netns_pair 32
certs_make "$TMP/certs"
head -c 64M /dev/urandom >"$TMP/src.img"
head -c 192M /dev/urandom >"$TMP/big.img"
truncate -s 64M "$TMP/dst.img"
truncate -s 192M "$TMP/dst2.img"
loop_attach src "$TMP/src.img"
loop_attach dst "$TMP/dst.img"
loop_attach src2 "$TMP/big.img"
loop_attach dst2 "$TMP/dst2.img"

rxlog=$TMP/receiver.log
receiver_spawn rx "$NS_B" "$rxlog" "$TMP/ready" --listen "$ADDR_B:0" \
	--tls-dir "$TMP/certs/standby" --state-dir "$TMP/rstate" --volume "vol=$dst" \
	--volume "big=$dst2" --allow vol=primary --allow big=primary --journal-size 32M \
	--timeout 3s
receiver_wait "$rx" "$TMP/ready" "$rxlog"

late=() # failures reported at the end
now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }'; }
wait_for() { # wait_for SECONDS WHAT CMD...: polls CMD every 50 ms
	local secs=$1 what=$2 i
	shift 2
	for ((i = 0; i < secs * 20; i++)); do
		"$@" && return 0
		sleep 0.05
	done
	tail -n 5 "$rxlog"
	fail "$what: not within $secs s"
}
state_changed() { [ "$(sha256sum <"$TMP/rstate/big/state")" != "$state_sum" ]; }

# link_cut NAME SRC STATE_DIR RATE TRIGGER DOWN: replicates NAME at RATE and cuts
# the link once TRIGGER succeeds, for DOWN seconds, or with DOWN=detect until the
# sender reported the cut (at least 4 s); replicate must then converge by itself.
# The sender's stderr lines are timestamped, so detection is measured from them.
link_cut() {
	local name=$1 dev=$2 sdir=$3 rate=$4 trigger=$5 down=$6 t_cut t_det rc err=$TMP/$1.err
	tc -n "$NS_A" qdisc replace dev vethA root tbf rate "$rate" burst 64kb latency 400ms
	ip netns exec "$NS_A" "$PVREPL" replicate --volume "$name" --device "$dev" \
		--state-dir "$sdir" --peer "$RX_ADDR" --tls-dir "$TMP/certs/primary" \
		--server-name standby --interval 1s --timeout 3s --max-epochs 1 --no-netwatch -o json \
		>"$TMP/$name.json" 2> >(while IFS= read -r l; do echo "$(now) $l"; done >"$err") &
	rpid=$!
	PIDS+=("$rpid")
	wait_for 20 "volume $name: the sync did not start" grep -q "volume=$name .* full sync started" "$rxlog"
	$trigger
	pid_alive "$rpid" || fail "volume $name: replicate finished before the cut (the link is too fast)"
	ip -n "$NS_A" link set vethA down
	t_cut=$(now)
	echo "volume $name: link down"
	if [ "$down" = detect ]; then
		wait_for 20 "volume $name: the sender did not report the cut" grep -q "retrying" "$err"
		sleep "$(awk -v s="$t_cut" -v e="$(now)" 'BEGIN { d = 4 - (e - s); printf "%.2f", (d > 0 ? d : 0) }')"
	else
		sleep "$down"
	fi
	ip -n "$NS_A" link set vethA up
	tc -n "$NS_A" qdisc show dev vethA | grep -q tbf || fail "the tbf qdisc did not survive the link going down"
	echo "volume $name: link up after $(since "$t_cut")s"
	wait_pid "$rpid" 90 rc
	[ "$rc" = 0 ] || { cat "$err"; fail "volume $name: replicate exit $rc"; }
	echo "volume $name: converged $(since "$t_cut")s after the cut"
	grep -q retrying "$err" || fail "volume $name: the sender never reported the cut"
	t_det=$(awk -v s="$t_cut" '/retrying/ { printf "%.1f", $1 - s; exit }' "$err")
	echo "volume $name: the sender reported the cut ${t_det}s after it: $(grep -m1 retrying "$err" | cut -d' ' -f2-)"
	if [ "$down" = detect ]; then
		# A dead link must be noticed in about --timeout (3 s); allow twice that
		# plus slack. Checked at the end, so the recovery is still tested.
		awk -v d="$t_det" 'BEGIN { exit !(d <= 2 * 3 + 1) }' ||
			late+=("volume $name: the sender took ${t_det}s to notice the dead link with --timeout 3s")
	fi
}
last() { tail -n 1 "$TMP/$1.json" | json_get "$2"; }

# 1. 64 MiB at 64 Mbit/s (about 8.5 s): cut 2 s into the sync, before any cursor,
#    and kept down until the sender notices (detection time).
cut_after_2s() { sleep 2; }
link_cut vol "$src" "$TMP/sstate" 64mbit cut_after_2s detect
[ "$(last vol result)" = ok ] || fail "vol: the last epoch did not succeed"
grep -q "volume=vol .*sync interrupted" "$rxlog" || fail "vol: the receiver did not log the interrupted sync"
wait_applied "$TMP/rstate/vol" "$(last vol epoch)"
dev_cmp "$src" "$dst" || fail "vol: the standby differs from the source"
echo "vol: $(grep -c '"result":"failed"' "$TMP/vol.json") failed attempts, then '$(last vol kind)' ok"

# 2. 192 MiB at 200 Mbit/s (about 8 s): cut for 4 s once the receiver persisted
#    its first cursor (its state file changes after 64 MiB), so the sync resumes.
cut_after_cursor() {
	state_sum=$(sha256sum <"$TMP/rstate/big/state")
	wait_for 20 "big: no cursor persisted" state_changed
}
link_cut big "$src2" "$TMP/sstate2" 200mbit cut_after_cursor 4
[ "$(last big result)" = ok ] || fail "big: the last epoch did not succeed"
wait_applied "$TMP/rstate/big" "$(last big epoch)"
dev_cmp "$src2" "$dst2" || fail "big: the standby differs from the source"
grep "volume=big .*resuming the sync at block" "$rxlog" || fail "big: the sync did not resume from the cursor"
[ "$(last big kind)" = "full sync (resumed)" ] || fail "big: the last epoch was a '$(last big kind)', not a resumed sync"
wire=$(last big wire_bytes)
[ "$wire" -lt $((160 << 20)) ] || fail "big: the resumed sync sent $wire bytes: not resumed from the 64 MiB cursor"
echo "big: resumed sync sent $((wire >> 20)) MiB of 192 MiB"
pid_alive "$rx" || fail "the receiver died"
[ ${#late[@]} -eq 0 ] || fail "$(printf '%s; ' "${late[@]}")"
echo "ok: both syncs survived a 4 s link cut: detected within the timeout, resumed, converged"
