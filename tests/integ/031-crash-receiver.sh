#!/usr/bin/env bash
# suite: fault (also run under ASan + UBSan by make check)
# SPDX-License-Identifier: Apache-2.0
# Crash consistency of the standby: kill -9 the receiver at points spread over an
# incremental epoch that rewrites 30% of a 64 MiB volume (receiving, journaling,
# committing, applying), also during the recovery that follows a restart, and
# kill -9 the sender mid-epoch. After each crash and restart the standby must be
# byte for byte the previous epoch's image or the new one, never anything else,
# and the new one whenever the sender was acknowledged. The next send converges.
#
#   namespace pvr-a-$$ (primary)                  namespace pvr-b-$$ (standby)
#   ┌──────────────────────────────┐             ┌───────────────────────────────┐
#   │ pvrepl send (background)     │             │ pvrepl receive ◄── kill -9    │
#   │   ◄── kill -9 (last case)    │    veth     │   restarted on the same state │
#   │ vethA 10.231.31.1/30 ────────┼─────────────┼──── vethB 10.231.31.2/30:PORT │
#   │   (tbf 200mbit after sync)   │             │                               │
#   │ state $TMP/sstate            │             │ state $TMP/rstate/vol         │
#   └──────────────┬───────────────┘             └───────────────┬───────────────┘
#     /dev/loopS ($TMP/src.img, 64 MiB)            /dev/loopD ($TMP/dst.img, 64 MiB)
#     30% of blocks rewritten per epoch            sha256 after each crash+restart
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
trap cleanup_common EXIT

POINTS=${CRASH_POINTS:-10}
netns_pair 31
certs_make "$TMP/certs"
head -c 64M /dev/urandom >"$TMP/src.img"
truncate -s 64M "$TMP/dst.img"
loop_attach src "$TMP/src.img"
loop_attach dst "$TMP/dst.img"

# mutate.py DEV SEED: rewrites a random 30% of the 16 KiB blocks (one in ten of
# them with zeros, so ZERO runs are part of the epoch), then fsync.
cat >"$TMP/mutate.py" <<'EOF'
import os, random, sys
BS = 16384
fd = os.open(sys.argv[1], os.O_RDWR)
n = os.lseek(fd, 0, os.SEEK_END) // BS
rnd = random.Random(int(sys.argv[2]))
for b in sorted(rnd.sample(range(n), n * 3 // 10)):
    os.pwrite(fd, bytes(BS) if rnd.random() < 0.1 else os.urandom(BS), b * BS)
os.fsync(fd)
os.close(fd)
EOF
mutate() { python3 "$TMP/mutate.py" "$src" "$1"; }

rxlog=$TMP/receiver.log
rx_args=(--listen "$ADDR_B:0" --tls-dir "$TMP/certs/standby" --state-dir "$TMP/rstate"
	--volume "vol=$dst" --allow vol=primary --journal-size 128M)
rx_start() {
	receiver_spawn rx "$NS_B" "$rxlog" "$TMP/ready" "${rx_args[@]}"
	receiver_wait "$rx" "$TMP/ready" "$rxlog"
}
send_args() {
	args=(ip netns exec "$NS_A" "$PVREPL" send --volume vol --device "$src"
		--state-dir "$TMP/sstate" --peer "$RX_ADDR" --tls-dir "$TMP/certs/primary"
		--server-name standby -o json --progress none)
}
n=0
send_ok() { # send_ok [nowait]: one epoch that must succeed, applied unless nowait; JSON in $out
	n=$((n + 1))
	out=$TMP/send$n.json
	local rc=0
	send_args
	timeout 120 "${args[@]}" >"$out" 2>"$TMP/send$n.err" || rc=$?
	[ "$rc" = 0 ] || { cat "$TMP/send$n.err" "$out"; tail -n 5 "$rxlog"; fail "send $n exit $rc"; }
	[ "${1:-}" = nowait ] || wait_applied "$TMP/rstate/vol" "$(field epoch)"
}
send_bg() { # send_bg: one epoch in the background; PID in $spid, JSON in $out
	n=$((n + 1))
	out=$TMP/send$n.json
	send_args
	"${args[@]}" >"$out" 2>"$TMP/send$n.err" &
	spid=$!
	PIDS+=("$spid")
}
field() { python3 -c 'import json,sys
try: print(json.load(open(sys.argv[1]))[sys.argv[2]])
except Exception: print("none")' "$out" "$1"; }

rx_start
send_ok
[ "$(field kind)" = "full sync" ] || fail "first send was not a full sync"
dev_cmp "$src" "$dst" || fail "initial sync: standby differs"

# From here the link is slowed (tbf, 200 Mbit/s: an epoch streams for about 1 s)
# so that kill points spread over the receiving and journaling, not only the
# connection set-up. The epoch's phases, measured: the sender's run (connect,
# stream, journal, commit, ack) and then the receiver's apply to the standby.
tc -n "$NS_A" qdisc add dev vethA root tbf rate 200mbit burst 64kb latency 400ms
mutate 1
t0=$(date +%s.%N)
send_ok nowait
t1=$(date +%s.%N)
wait_applied "$TMP/rstate/vol" "$(field epoch)"
t2=$(date +%s.%N)
[ "$(field kind)" = incremental ] || fail "measuring epoch was not incremental"
dev_cmp "$src" "$dst" || fail "measuring epoch: standby differs"
send_s=$(awk -v s="$t0" -v e="$t1" 'BEGIN { printf "%.3f", e - s }')
apply_s=$(awk -v s="$t1" -v e="$t2" 'BEGIN { printf "%.3f", e - s }')
echo "an incremental epoch of $(field blocks_changed) blocks: sender ${send_s}s, then apply ${apply_s}s"

# crash_point I FROM DELAY: the receiver is killed DELAY s after the sender starts
# (FROM=start: receiving, journaling, committing) or after the sender got its ack
# and exited (FROM=ack: the apply). Its first restart is killed during recovery;
# after the second the standby must be the previous epoch or the new one (the new
# one if acked). Then a send converges.
old=0 new_acked=0 new_unacked=0 resync=0 cur=$(dev_sha "$src")
rec_kills=(0 0.005 0.02 0.05 0.1)
crash_point() {
	local i=$1 from=$2 delay=$3 before=$cur after got state result rk kind src_rc w
	mutate $((100 + i))
	after=$(dev_sha "$src")
	send_bg
	if [ "$from" = ack ]; then
		# Poll every 5 ms, not wait_pid's 100: the apply after the ack takes
		# about a tenth of a second, and the kill must land inside it.
		for ((w = 0; w < 12000; w++)); do pid_alive "$spid" || break; sleep 0.005; done
		wait_pid "$spid" 60 src_rc
		sleep "$delay"
		kill9 "$rx"
	else
		sleep "$delay"
		kill9 "$rx"
		wait_pid "$spid" 60 src_rc
	fi
	result=$(field result)
	rk=${rec_kills[i % ${#rec_kills[@]}]}
	receiver_spawn rx "$NS_B" "$rxlog" "$TMP/ready" "${rx_args[@]}"
	sleep "$rk"
	kill9 "$rx"
	rx_start
	got=$(dev_sha "$dst")
	if [ "$got" = "$after" ]; then
		state=new
		if [ "$result" = ok ]; then new_acked=$((new_acked + 1)); else new_unacked=$((new_unacked + 1)); fi
	elif [ "$got" = "$before" ]; then
		state=previous
		old=$((old + 1))
		[ "$result" != ok ] || fail "point $i (kill ${delay}s after the $from): the sender was acked but the standby holds the previous epoch"
	else
		tail -n 20 "$rxlog"
		fail "point $i (kill ${delay}s after the $from, recovery kill at ${rk}s): the standby is neither the previous epoch nor the new one"
	fi
	echo "point $i: kill ${delay}s after the $from: sender exit $src_rc result $result; recovery killed at ${rk}s; standby = $state epoch"
	send_ok
	kind=$(field kind)
	[ "$(dev_sha "$dst")" = "$after" ] || fail "point $i: the next send did not converge"
	if [ "$kind" != incremental ]; then
		resync=$((resync + 1))
		echo "point $i: the next send was a '$kind' (standby $state, sender $result)"
	fi
	cur=$after
}
half=$((POINTS / 2))
for ((i = 0; i < half; i++)); do
	crash_point "$i" start "$(awk -v d="$send_s" -v i="$i" -v n="$half" 'BEGIN { printf "%.3f", (n > 1 ? d * i / (n - 1) : 0) }')"
done
for ((i = half; i < POINTS; i++)); do
	crash_point "$i" ack "$(awk -v d="$apply_s" -v i="$((i - half))" -v n="$((POINTS - half))" 'BEGIN { printf "%.3f", d * i / n }')"
done
dev_cmp "$src" "$dst" || fail "after the receiver crashes the standby differs from the source"
replays=$(grep -c "replayed committed epoch" "$rxlog" || true)
discards=$(grep -c "discarded uncommitted epoch" "$rxlog" || true)
echo "receiver crashes: $old left the previous epoch, $new_acked the new (acked), $new_unacked the new (ack lost); recoveries: $replays replayed a committed epoch, $discards discarded an open one; $resync follow-up sends were full resyncs"
[ "$old" -ge 1 ] || fail "no crash point left the previous epoch"
[ "$replays" -ge 1 ] || fail "no crash point hit the apply (no recovery replayed an epoch)"

# A lost ack, as the sender sees it: the receiver committed epoch N but the
# sender's state still says N-1 (its state dir from before the epoch). The next
# send must converge (a restarted sender has no record of N's blocks: PROTOCOL.md
# "Reconnect" then allows a full resync).
cp -a "$TMP/sstate" "$TMP/sstate.before"
mutate 500
send_ok
rm -rf "$TMP/sstate"
mv "$TMP/sstate.before" "$TMP/sstate"
send_ok
[ "$(field result)" = ok ] || fail "the send after a lost ack failed"
dev_cmp "$src" "$dst" || fail "the send after a lost ack did not converge"
echo "lost ack: the receiver was one epoch ahead; the next send was a '$(field kind)' of $(field blocks_sent) blocks and converged"
send_ok
[ "$(field kind)" = incremental ] || fail "the send after the lost-ack recovery was not incremental"

# The sender dies mid-epoch (0.6 s into an epoch that streams for about 1 s);
# the receiver discards it, the standby stays.
before=$(dev_sha "$dst")
mutate 999
after=$(dev_sha "$src")
send_bg
ep=$(($(grep -o 'epoch=[0-9]* committed' "$rxlog" | tail -n 1 | sed 's/epoch=//; s/ .*//') + 1))
sleep 0.6
kill9 "$spid"
for ((w = 0; w < 150; w++)); do
	grep -qE "epoch=$ep (interrupted|committed)" "$rxlog" && break
	sleep 0.1
done
grep -qE "epoch=$ep (interrupted|committed)" "$rxlog" || { tail -n 5 "$rxlog"; fail "the receiver did not notice the sender's death within 15 s"; }
grep -q "epoch=$ep interrupted" "$rxlog" || fail "the sender was killed 0.6 s into a 1 s epoch but the receiver committed it"
[ "$(dev_sha "$dst")" = "$before" ] || fail "sender killed mid-epoch: the standby is not the previous epoch"
echo "sender killed mid-epoch $ep: the receiver discarded it, the standby kept the previous epoch"
send_ok
[ "$(field result)" = ok ] || fail "the send after the sender's crash failed"
[ "$(field kind)" = incremental ] || fail "the send after the sender's crash was a '$(field kind)', not incremental"
dev_cmp "$src" "$dst" || fail "the send after the sender's crash did not converge"
pid_alive "$rx" || fail "the receiver died"
echo "ok: $POINTS receiver crash points (each also killed in recovery) and a sender crash: the standby was always one epoch's image; converged"
