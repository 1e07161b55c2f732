#!/usr/bin/env bash
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
# them with zeros, so ZERO runs are part of the epoch), O_DIRECT, then fsync.
cat >"$TMP/mutate.py" <<'EOF'
import mmap, os, random, sys
BS = 16384
fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
n = os.lseek(fd, 0, os.SEEK_END) // BS
rnd = random.Random(int(sys.argv[2]))
buf = mmap.mmap(-1, BS)
for b in sorted(rnd.sample(range(n), n * 3 // 10)):
    buf.seek(0)
    buf.write(bytes(BS) if rnd.random() < 0.1 else os.urandom(BS))
    os.pwritev(fd, [buf], b * BS)
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
send_ok() { # send_ok: one epoch that must succeed; JSON in $out
	n=$((n + 1))
	out=$TMP/send$n.json
	local rc=0
	send_args
	timeout 120 "${args[@]}" >"$out" 2>"$TMP/send$n.err" || rc=$?
	[ "$rc" = 0 ] || { cat "$TMP/send$n.err" "$out"; tail -n 5 "$rxlog"; fail "send $n exit $rc"; }
	rx_wait_applied "$rxlog" "$(field epoch)"
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

# The epoch's duration, measured from the sender's start to the end of the
# receiver's apply (send_ok waits for it): the kill points spread over it.
mutate 1
t0=$(date +%s.%N)
send_ok
dur=$(awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN { printf "%.3f", e - s }')
[ "$(field kind)" = incremental ] || fail "measuring epoch was not incremental"
dev_cmp "$src" "$dst" || fail "measuring epoch: standby differs"
echo "an incremental epoch of $(field blocks_changed) blocks takes ${dur}s to apply end to end (sender: $(field seconds)s)"

old=0 new_acked=0 new_unacked=0 resync=0
rec_kills=(0 0.005 0.02 0.05 0.1)
for ((i = 0; i < POINTS; i++)); do
	delay=$(awk -v d="$dur" -v i="$i" -v n="$POINTS" 'BEGIN { printf "%.3f", d * i / (n - 1) }')
	before=$(dev_sha "$dst")
	[ "$before" = "$(dev_sha "$src")" ] || fail "point $i: not converged before the crash"
	mutate $((100 + i))
	after=$(dev_sha "$src")
	send_bg
	sleep "$delay"
	kill9 "$rx"
	wait_pid "$spid" 60 src_rc
	result=$(field result)
	# Restart; kill the first restart during its recovery, then restart for good.
	rk=${rec_kills[i % ${#rec_kills[@]}]}
	receiver_spawn rx "$NS_B" "$rxlog" "$TMP/ready" "${rx_args[@]}"
	sleep "$rk"
	kill9 "$rx"
	rx_start
	got=$(dev_sha "$dst")
	if [ "$got" = "$after" ]; then
		state=new
		[ "$result" = ok ] && new_acked=$((new_acked + 1)) || new_unacked=$((new_unacked + 1))
	elif [ "$got" = "$before" ]; then
		state=old
		old=$((old + 1))
		[ "$result" != ok ] || fail "point $i (kill at ${delay}s): the sender was acked but the standby holds the previous epoch"
	else
		tail -n 20 "$rxlog"
		fail "point $i (kill at ${delay}s, recovery kill at ${rk}s): the standby is neither the previous epoch nor the new one"
	fi
	echo "point $i: kill at ${delay}s: sender exit $src_rc result $result; recovery killed at ${rk}s; standby = $state epoch"
	send_ok
	kind=$(field kind)
	[ "$(field result)" = ok ] || fail "point $i: the next send did not succeed"
	dev_cmp "$src" "$dst" || fail "point $i: the next send did not converge"
	if [ "$kind" != incremental ]; then
		resync=$((resync + 1))
		echo "point $i: the next send was a '$kind' (standby $state, sender $result)"
	fi
done
replays=$(grep -c "replayed committed epoch" "$rxlog" || true)
echo "receiver crashes: $old left the previous epoch, $new_acked the new (acked), $new_unacked the new (ack lost); $replays recoveries replayed a committed epoch; $resync follow-up sends were full resyncs"
[ "$old" -ge 1 ] || fail "no crash point left the previous epoch (kill points not spread?)"
[ $((new_acked + new_unacked)) -ge 1 ] || echo "note: no crash point landed after the commit"

# The sender dies mid-epoch: the receiver discards the epoch, the standby stays.
before=$(dev_sha "$dst")
mutate 999
after=$(dev_sha "$src")
send_bg
ep=$(($(grep -o 'epoch=[0-9]*' "$rxlog" | tail -n 1 | cut -d= -f2) + 1))
sleep "$(awk -v d="$dur" 'BEGIN { printf "%.3f", d / 3 }')"
kill9 "$spid"
for ((w = 0; w < 150; w++)); do
	grep -qE "epoch=$ep (interrupted|committed)" "$rxlog" && break
	sleep 0.1
done
grep -qE "epoch=$ep (interrupted|committed)" "$rxlog" || { tail -n 5 "$rxlog"; fail "the receiver did not notice the sender's death within 15 s"; }
got=$(dev_sha "$dst")
if grep -q "epoch=$ep interrupted" "$rxlog"; then
	[ "$got" = "$before" ] || fail "sender killed mid-epoch: the standby is not the previous epoch"
	echo "sender killed mid-epoch $ep: the receiver discarded it, the standby kept the previous epoch"
else
	[ "$got" = "$after" ] || fail "sender killed after the commit: the standby is not the new epoch"
	echo "note: the sender was killed only after the receiver committed epoch $ep"
fi
send_ok
[ "$(field result)" = ok ] || fail "the send after the sender's crash failed"
echo "after the sender's crash the next send was '$(field kind)'"
dev_cmp "$src" "$dst" || fail "the send after the sender's crash did not converge"
pid_alive "$rx" || fail "the receiver died"
echo "ok: $POINTS receiver crash points and a sender crash, the standby always one epoch's image; converged"
