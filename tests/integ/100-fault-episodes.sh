#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A link that damages the stream (issue "reliability", the network part of its
# fault suite): epochs sent through `test-tool fault-proxy`, one fault each, must
# either fail cleanly or succeed, and never cost the standby its consistency.
#
#   src.img (32 MiB random) ──pvrepl send──► fault-proxy ──► pvrepl receive ──► dst.img
#          └──────────────── pvrepl send (clean, straight) ──────┘
#
# After a clean initial sync, $EPISODES (default 42: 6 of each of the 7 kinds)
# episodes drawn from $SEED (default $RANDOM; printed first, so that a failure
# can be replayed with SEED=N). Each one rewrites 1..4 whole MiB of the source,
# sends one epoch through a new proxy whose plan is one fault, then one clean
# epoch straight to the receiver. Whole MiB regions make the faulty stream's
# frames known (HELLO 184 bytes, EPOCH_BEGIN 88, one DATA frame of 1049144 per
# MiB, EPOCH_END 56), so offsets are drawn from the first frames, from anywhere,
# or at a frame boundary (with that whole frame to dup or drop, or all of the
# stream before a truncate, rst or stall: the ack is lost after the receiver
# may have committed).
#
# Checked each episode: the faulty send exits within 15 s, 0 or non-zero with a
# message on stderr, never by a signal (exit >= 128), and when it succeeded the
# standby equals the source; the clean epoch succeeds and the standby then
# equals the source byte for byte; the receiver (--timeout 2s, like the
# senders) stays up. Ends with a table per fault kind. A failure says HANG,
# CRASH or CORRUPTED, the fault and where it hit, the command, and what the
# send, the proxy and the receiver said.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup_common EXIT
command -v cmp >/dev/null || skip "needs cmp (diffutils)"

SEED=${SEED:-$RANDOM}
EPISODES=${EPISODES:-42}
RANDOM=$SEED
echo "seed $SEED ($EPISODES episodes; replay with SEED=$SEED)"
t_start=$SECONDS

HELLO=184 BEGIN=88 DATA=1049144 END=56 # frame sizes (PROTOCOL.md), 16 KiB blocks
src=$TMP/src.img dst=$TMP/dst.img
head -c 32M /dev/urandom >"$src"
truncate -s 32M "$dst"

rxlog=$TMP/recv.log
receiver_spawn rx - "$rxlog" "$TMP/ready" --listen 127.0.0.1:0 --insecure-plaintext \
	--state-dir "$TMP/rstate" --volume "vol=$dst" --journal-size 64M --timeout 2s
receiver_wait "$rx" "$TMP/ready" "$rxlog"

SEND=("$PVREPL" send --volume vol --device "$src" --state-dir "$TMP/sstate" --insecure-plaintext
	--timeout 2s --progress none -o json)

# rnd N: a number in [0, N) in R (30 bits of bash's generator, seeded above; no
# subshell, which would draw from a generator of its own).
rnd() { R=$(((RANDOM << 15 | RANDOM) % $1)); }

report() { # what the faulty send, the proxy and the receiver said (stderr)
	{
		echo "--- the faulty send's output:"
		cat "$TMP/fault.json" "$TMP/fault.err"
		echo "--- the proxy's log:"
		tail -n 2 "$TMP/proxy.log"
		echo "--- the receiver's log:"
		tail -n 20 "$rxlog"
	} >&2 2>/dev/null || true
}

clean_send() { # clean_send WHAT: one epoch straight to the receiver, which must succeed
	local rc=0
	"${SEND[@]}" --peer "$RX_ADDR" >"$TMP/clean.json" 2>"$TMP/clean.err" || rc=$?
	if [ "$rc" != 0 ]; then
		report
		echo "--- the clean send's output:" >&2
		cat "$TMP/clean.json" "$TMP/clean.err" >&2
		fail "$1: the clean epoch after it failed (exit $rc)"
	fi
	wait_applied "$TMP/rstate/vol" "$(json_get epoch <"$TMP/clean.json")" ||
		{ report; fail "$1: the clean epoch after it was not applied within 10 s"; }
	dev_cmp "$src" "$dst" >/dev/null ||
		{ report; fail "$1: CORRUPTED: the standby differs from the source after the clean epoch"; }
}

clean_send "initial sync"
echo "initial sync: $(json_get kind <"$TMP/clean.json"), standby identical"

# where OFFSET: the frame of the faulty stream that holds OFFSET (its length L known).
where() {
	local o=$1
	if ((o < HELLO)); then W="HELLO+$o"
	elif ((o < HELLO + BEGIN)); then W="EPOCH_BEGIN+$((o - HELLO))"
	elif ((o < L - END)); then W="DATA#$(((o - HELLO - BEGIN) / DATA + 1))+$(((o - HELLO - BEGIN) % DATA))"
	elif ((o < L)); then W="EPOCH_END+$((o - L + END))"
	else W="after EPOCH_END"
	fi
}

# fault_for KIND: a fault line in F for a stream of L bytes holding NDATA DATA frames.
DELAYS=(300 800 1500 2500 4000) # ms, on both sides of the 2 s timeouts
fault_for() {
	local kind=$1 mode off len
	if [ "$kind" = delay ]; then
		rnd ${#DELAYS[@]}
		F="delay ${DELAYS[R]}"
		return
	fi
	rnd 4
	mode=$R
	case $mode in
	0) rnd 400; off=$R len=0 ;; # the first frames: HELLO, EPOCH_BEGIN, a DATA header
	1 | 2) rnd "$L"; off=$R len=0 ;;
	3) # a frame boundary, and that whole frame for dup and drop
		rnd 5
		case $R in
		0) off=0 len=$HELLO ;;
		1) off=$HELLO len=$BEGIN ;;
		2) rnd "$NDATA"; off=$((HELLO + BEGIN + R * DATA)) len=$DATA ;;
		3) off=$((L - END)) len=$END ;;
		4) off=$L len=0 ;; # all of it: a truncate, rst or stall loses the ack
		esac ;;
	esac
	case $kind in
	dup | drop)
		((off < L)) || off=$((L - END)) len=$END
		if [ "$len" = 0 ]; then
			rnd 3
			case $R in 0) rnd 16 ;; 1) rnd 4096 ;; 2) rnd 65536 ;; esac
			len=$((R + 1))
		fi
		# dup sends at most 64 KiB twice: of a DATA frame, its header and hashes.
		[ "$kind" = dup ] && ((len > 65536)) && len=$((32 + 24 + 8 * 64))
		((len <= L - off)) || len=$((L - off))
		F="$kind $off $len" ;;
	flip) ((off < L)) || off=$((L - 1)); F="flip $off" ;;
	*) F="$kind $off" ;;
	esac
}

KINDS=(truncate flip dup drop delay rst stall)
declare -A n_ep=() n_fail=() n_ok=() n_same=()
for k in "${KINDS[@]}"; do n_ep[$k]=0 n_fail[$k]=0 n_ok[$k]=0 n_same[$k]=0; done
# Each kind EPISODES/7 times (the rest at random), in an order drawn from the seed.
order=()
for ((i = 0; i < EPISODES; i++)); do
	if ((i < EPISODES / 7 * 7)); then order+=("${KINDS[i % 7]}"); else rnd 7; order+=("${KINDS[R]}"); fi
done
for ((i = EPISODES - 1; i > 0; i--)); do
	rnd $((i + 1))
	t=${order[i]} order[i]=${order[R]} order[R]=$t
done

resyncs=0
for ((ep = 1; ep <= EPISODES; ep++)); do
	kind=${order[ep - 1]}
	# 1..4 distinct whole MiB of the source rewritten.
	rnd 4
	nreg=$((R + 1)) regs=" "
	NDATA=0
	for ((j = 0; j < 100 && NDATA < nreg; j++)); do
		rnd 32
		[[ $regs == *" $R "* ]] && continue
		regs+="$R " NDATA=$((NDATA + 1))
		head -c 1M /dev/urandom | dd of="$src" bs=1M seek="$R" conv=notrunc status=none
	done
	L=$((HELLO + BEGIN + NDATA * DATA + END))
	fault_for "$kind"
	read -r _ off _ <<<"$F"
	if [ "$kind" = delay ]; then W="64 KiB"; else where "$off"; fi
	what="episode $ep: '$F' (at $W; stream $L bytes)"

	# A proxy of its own per episode: its plan is this one fault.
	echo "$F" >"$TMP/plan"
	rm -f "$TMP/pport"
	"$TEST_TOOL" fault-proxy --listen 127.0.0.1:0 --port-file "$TMP/pport" --target "$RX_ADDR" \
		--seed "$((SEED * 1000 + ep))" --plan "$TMP/plan" 2>>"$TMP/proxy.log" &
	proxy=$!
	PIDS+=("$proxy")
	for ((j = 0; j < 100; j++)); do
		[ -s "$TMP/pport" ] && break
		pid_alive "$proxy" || fail "$what: the proxy exited at start: $(tail -n 3 "$TMP/proxy.log")"
		sleep 0.05
	done
	[ -s "$TMP/pport" ] || fail "$what: the proxy did not listen within 5 s"

	# The faulty send: bounded to 15 s, and not by a signal.
	"${SEND[@]}" --peer "127.0.0.1:$(cat "$TMP/pport")" >"$TMP/fault.json" 2>"$TMP/fault.err" &
	spid=$!
	PIDS+=("$spid")
	t0=$SECONDS
	for ((j = 0; j < 150 && SECONDS - t0 < 16; j++)); do pid_alive "$spid" || break; sleep 0.1; done
	cmd="${SEND[*]} --peer 127.0.0.1:$(cat "$TMP/pport") (the proxy's plan: '$F')"
	if pid_alive "$spid"; then
		kill9 "$spid"
		report
		fail "$what: HANG: the send did not finish within 15 s: $cmd"
	fi
	rc=0
	wait "$spid" || rc=$?
	pid_forget "$spid"
	if ((rc >= 128)); then
		report
		fail "$what: CRASH: the send exited $rc (signal $((rc - 128))): $cmd"
	fi
	if [ "$rc" = 0 ]; then
		# An epoch that got through the fault is on the standby as sent.
		[ "$(json_get result <"$TMP/fault.json")" = ok ] || { report; fail "$what: exit 0 without result ok"; }
		wait_applied "$TMP/rstate/vol" "$(json_get epoch <"$TMP/fault.json")" ||
			{ report; fail "$what: the epoch the send saw acked was not applied within 10 s"; }
		dev_cmp "$src" "$dst" >/dev/null ||
			{ report; fail "$what: CORRUPTED: the standby differs from the source after an epoch that succeeded: $cmd"; }
		res=ok n_ok[$kind]=$((n_ok[$kind] + 1))
	else
		[ -s "$TMP/fault.err" ] || { report; fail "$what: the send failed (exit $rc) without a message: $cmd"; }
		res="exit $rc: $(sed -n '1s/^pvrepl: //p' "$TMP/fault.err")"
		n_fail[$kind]=$((n_fail[$kind] + 1))
	fi
	n_ep[$kind]=$((n_ep[$kind] + 1))
	pid_alive "$rx" || { report; fail "$what: the receiver died after: $cmd"; }

	# The clean epoch, with the proxy still up (a stalled one still holds its
	# connection to the receiver): the standby must equal the source after it.
	clean_send "$what"
	n_same[$kind]=$((n_same[$kind] + 1))
	ckind=$(json_get kind <"$TMP/clean.json")
	[ "$ckind" = incremental ] || resyncs=$((resyncs + 1))
	kill "$proxy" 2>/dev/null || true
	wait "$proxy" 2>/dev/null || true
	pid_forget "$proxy"
	printf '%s: %s; then %s ok, identical\n' "$what" "$res" "$ckind"
	pid_alive "$rx" || { report; fail "$what: the receiver died"; }
done

echo
printf '%-9s %8s %15s %10s %18s\n' fault episodes "failed cleanly" succeeded "identical after"
total=0
for k in "${KINDS[@]}"; do
	printf '%-9s %8d %15d %10d %18d\n' "$k" "${n_ep[$k]}" "${n_fail[$k]}" "${n_ok[$k]}" "${n_same[$k]}"
	total=$((total + n_ep[$k]))
done
echo "clean epochs that needed a full resync: $resyncs of $total"
pid_alive "$rx" || fail "the receiver died"
echo "ok: seed $SEED, $total episodes in $((SECONDS - t_start)) s, the receiver up, the standby identical after every one"
